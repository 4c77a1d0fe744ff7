package ringtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// cacheEnv names the environment variable that disables the template cache
// when set to "off" (or "0", "false").
const cacheEnv = "RINGTEST_CACHE"

// templateArgs are the mariadb-install-db arguments (besides --datadir); the
// server options among them are passed through to the bootstrap server and
// must agree with server.args.
func templateArgs() []string {
	a := []string{
		"--no-defaults",
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--skip-name-resolve",
		"--innodb-buffer-pool-size=16M",
		"--innodb-log-file-size=" + innodbLogFileSize,
		"--performance-schema=OFF",
	}
	if os.Geteuid() == 0 {
		a = append(a, "--user=root")
	}
	return a
}

// template returns a datadir initialised by mariadb-install-db that the
// caller copies for every node, and whether the caller should remove it
// once copied.
//
// Initialising a datadir takes one to a few seconds, so the result is
// cached under os.UserCacheDir()/ringtest, keyed by the binaries (path,
// size, modification time), the arguments and the effective uid. The cache
// entry is built in a scratch directory and renamed into place, so
// concurrent test binaries never see a partial one. Set RINGTEST_CACHE=off
// to build a fresh template inside BaseDir instead.
func template(ctx context.Context, server, installDB, baseDir string, logf func(string, ...any)) (string, bool, error) {
	t0 := time.Now()
	args := templateArgs()
	cacheRoot := templateCacheRoot()
	if cacheRoot == "" {
		dir := filepath.Join(baseDir, "template")
		if err := installTemplate(ctx, installDB, args, dir); err != nil {
			return "", false, err
		}
		logf("ringtest: template datadir initialised in %v", time.Since(t0).Round(time.Millisecond))
		return dir, true, nil
	}

	key, err := templateKey(server, installDB, args)
	if err != nil {
		return "", false, err
	}
	final := filepath.Join(cacheRoot, "template-"+key)
	if _, err := os.Stat(filepath.Join(final, "mysql")); err == nil {
		return final, false, nil
	}
	if err := os.MkdirAll(cacheRoot, 0o700); err != nil {
		return "", false, fmt.Errorf("ringtest: template cache: %w (set %s=off to disable it)", err, cacheEnv)
	}
	scratch, err := os.MkdirTemp(cacheRoot, "building-")
	if err != nil {
		return "", false, fmt.Errorf("ringtest: template cache: %w (set %s=off to disable it)", err, cacheEnv)
	}
	defer os.RemoveAll(scratch) // no-op once renamed
	dir := filepath.Join(scratch, "datadir")
	if err := installTemplate(ctx, installDB, args, dir); err != nil {
		return "", false, err
	}
	if err := os.Rename(dir, final); err != nil {
		// Another process may have won the race; its template is as good.
		if _, serr := os.Stat(filepath.Join(final, "mysql")); serr != nil {
			return "", false, fmt.Errorf("ringtest: template cache: %w", err)
		}
	}
	logf("ringtest: template datadir initialised in %v and cached in %s", time.Since(t0).Round(time.Millisecond), final)
	return final, false, nil
}

// templateCacheRoot returns the cache directory, or "" if caching is off or
// there is no user cache directory.
func templateCacheRoot() string {
	switch strings.ToLower(os.Getenv(cacheEnv)) {
	case "off", "0", "false", "no":
		return ""
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "ringtest")
}

// templateKey identifies the binaries and arguments a template depends on.
func templateKey(server, installDB string, args []string) (string, error) {
	h := sha256.New()
	for _, p := range []string{server, installDB} {
		abs, err := filepath.EvalSymlinks(p)
		if err != nil {
			return "", fmt.Errorf("ringtest: %w", err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return "", fmt.Errorf("ringtest: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", abs, fi.Size(), fi.ModTime().UnixNano())
	}
	fmt.Fprintf(h, "%s\x00uid=%d", strings.Join(args, "\x00"), os.Geteuid())
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// installTemplate runs mariadb-install-db into dir.
func installTemplate(ctx context.Context, installDB string, args []string, dir string) error {
	args = append(args[:len(args):len(args)], "--datadir="+dir)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, installDB, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = sysProcAttr()
	err := startCmd(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return fmt.Errorf("ringtest: %s %s: %w\n%s", installDB, strings.Join(args, " "), err, tail(out.String(), errLogTailBytes))
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
