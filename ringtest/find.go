package ringtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// installHint tells the reader how to get a MariaDB server onto the machine.
const installHint = "install MariaDB (Debian/Ubuntu: apt-get install -y mariadb-server) " +
	"or set Options.ServerPath to a mariadbd/mysqld binary"

// FindServer returns the path of a MariaDB server binary. It searches PATH
// for mariadbd and then mysqld, and finally tries /usr/sbin/mariadbd and
// /usr/sbin/mysqld (sbin is often missing from PATH). The error explains how
// to install the server when none is found.
func FindServer() (string, error) {
	for _, name := range []string{"mariadbd", "mysqld"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	for _, p := range []string{"/usr/sbin/mariadbd", "/usr/sbin/mysqld"} {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", errors.New("ringtest: no mariadbd or mysqld binary found in PATH or /usr/sbin; " + installHint)
}

// findInstallDB locates mariadb-install-db (or the older mysql_install_db)
// belonging to the server binary: next to it, in ../bin and ../scripts
// relative to it, and then in PATH.
func findInstallDB(server string) (string, error) {
	names := []string{"mariadb-install-db", "mysql_install_db"}
	dir := filepath.Dir(server)
	dirs := []string{dir, filepath.Join(dir, "..", "bin"), filepath.Join(dir, "..", "scripts")}
	for _, d := range dirs {
		for _, n := range names {
			if p := filepath.Join(d, n); isExecutable(p) {
				return p, nil
			}
		}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("ringtest: mariadb-install-db not found next to %s or in PATH; %s", server, installHint)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
