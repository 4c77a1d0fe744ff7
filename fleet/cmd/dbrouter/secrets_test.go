package main

import (
	"strings"
	"testing"
)

func TestRedactions(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       string // the text as shown
	}{
		{"plain", "defaults:\n  user: app\n  password: hunter2\n",
			"defaults:\n  user: app\n  password: REDACTED\n"},
		{"quoted", "password: 'it''s a secret'  # comment\n",
			"password: REDACTED\n"},
		{"variable", "password: ${DB_PASSWORD}\n",
			"password: ${DB_PASSWORD}\n"},
		{"quoted variable", "password: \"${DB_PASSWORD}\"\n",
			"password: \"${DB_PASSWORD}\"\n"},
		{"variable with a default", "password: ${DB_PASSWORD:-fallback-secret}\n",
			"password: REDACTED\n"},
		{"variable and text", "password: pre-${DB_PASSWORD}\n",
			"password: REDACTED\n"},
		{"empty", "password: \"\"\nuser: app\n",
			"password: REDACTED\nuser: app\n"}, // the line rule cannot tell: hidden all the same
		{"flow", "c: { user: ops, password: flow-secret, database: shop }\n",
			"c: { user: ops, password: REDACTED\n"},
		{"flow variable", "c: { user: ops, password: ${PW}, database: shop }\n",
			"c: { user: ops, password: ${PW}, database: shop }\n"},
		{"block scalar", "defaults:\n  password: |\n    block-secret-1\n\n    block-secret-2\n  user: app\n",
			"defaults:\n  password: REDACTED\nREDACTED\n\nREDACTED\n  user: app\n"},
		{"multi-line plain", "defaults:\n  password: first-half\n    second-half\n  user: app\n",
			"defaults:\n  password: REDACTED\nREDACTED\n  user: app\n"},
		{"alias", "x-secret: &pw anchored-secret\ndefaults:\n  password: *pw\n",
			"x-secret: REDACTED\ndefaults:\n  password: REDACTED\n"},
		{"upper case key", "Password: upper-secret\n",
			"Password: REDACTED\n"},
		{"quoted key", "\"password\": quoted-key-secret\n",
			"\"password\": REDACTED\n"},
		{"other key", "db_password: other-key-secret\n",
			"db_password: REDACTED\n"},
		{"comment", "# password: comment-secret\nuser: app\n",
			"# password: REDACTED\nuser: app\n"},
		{"not YAML", "clusters: [\n  password: broken-secret\n",
			"clusters: [\n  password: REDACTED\n"},
		{"no password", "user: app\nparams: { parseTime: \"true\" }\n",
			"user: app\nparams: { parseTime: \"true\" }\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := findRedactions([]byte(tc.text))
			lines := strings.Split(tc.text, "\n")
			for i := range lines {
				lines[i] = r.apply(i+1, lines[i])
			}
			if got := strings.Join(lines, "\n"); got != tc.want {
				t.Errorf("shown as\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestLiteralPasswords(t *testing.T) {
	secrets, ok := literalPasswords([]byte("defaults:\n  password: ${PW}\nclusters:\n  a:\n    password: lit\n  b: { password: \"\" }\n"))
	if !ok || len(secrets) != 1 || secrets[0].line != 5 || secrets[0].value != "lit" {
		t.Fatalf("literalPasswords = %+v, %v; want the one on line 5", secrets, ok)
	}
	if _, ok := literalPasswords([]byte("a: [\n")); ok {
		t.Error("a text that is not YAML reported as YAML")
	}
}
