package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpdateReadmeOnlyMarkedBlock checks that updateReadme replaces the text
// between the bench markers and nothing else, and leaves a file without a
// proper marker pair untouched.
func TestUpdateReadmeOnlyMarkedBlock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "README.md")
	before := "# title\n\nintro <!-- not a marker -->\n\n"
	after := "\n\n## Next\n\nmore text\n"
	in := before + readmeBegin + "\nold numbers\n" + readmeEnd + after
	if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := updateReadme(path, "new numbers\n"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := before + readmeBegin + "\nnew numbers\n" + readmeEnd + after
	if string(got) != want {
		t.Errorf("updateReadme wrote\n%q\nwant\n%q", got, want)
	}

	for name, text := range map[string]string{
		"no markers":   "# title\n\ntext\n",
		"no end":       "# title\n" + readmeBegin + "\nx\n",
		"end before":   "# title\n" + readmeEnd + "\nx\n" + readmeBegin + "\n",
		"only the end": "# title\n" + readmeEnd + "\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".md")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := updateReadme(p, "new numbers\n"); err == nil {
			t.Errorf("%s: updateReadme succeeded, want an error", name)
		}
		if got, _ := os.ReadFile(p); string(got) != text {
			t.Errorf("%s: file changed to %q", name, got)
		}
	}
}

// TestRepositoryReadmeHasOneBenchBlock checks that the repository's README
// keeps exactly one bench block, in order, for `make bench` to rewrite.
func TestRepositoryReadmeHasOneBenchBlock(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if n, m := strings.Count(s, readmeBegin), strings.Count(s, readmeEnd); n != 1 || m != 1 {
		t.Fatalf("README.md has %d %s and %d %s markers, want one of each", n, readmeBegin, m, readmeEnd)
	}
	if strings.Index(s, readmeBegin) > strings.Index(s, readmeEnd) {
		t.Fatalf("README.md: %s comes after %s", readmeBegin, readmeEnd)
	}
}
