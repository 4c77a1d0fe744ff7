package ringtest

// The Docker backend: every server in a container (dockerNode, in
// backend_docker_node.go) through testcontainers-go, on the networks and
// volumes of its harness (dockerEnv, here). The native backend is in
// backend_native.go and backend_native_node.go; both implement node
// (backend.go).

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
)

// LocalImage is the default Docker image: MariaDB from this machine's own
// Debian mirror, built by the embedded build-mariadb-image.sh when absent.
const LocalImage = "dbrouter-ringtest/mariadb:local"

// localImageRepo is the namespace of images the harness builds itself
// rather than pulls.
const localImageRepo = "dbrouter-ringtest/"

// ImageEnv names the environment variable that sets the Docker image when
// Options.Image is empty, e.g. DBROUTER_RING_IMAGE=mariadb:11.4 to use the
// official image where a registry is reachable.
const ImageEnv = "DBROUTER_RING_IMAGE"

// Labels put on every container, network and volume of the Docker backend:
// labelRingtest on all of them (so scripts can find leftovers of any run),
// labelHarness with the harness id.
const (
	labelRingtest = "dbrouter.ringtest"
	labelHarness  = "dbrouter.ringtest.harness"
)

// DefaultImage returns the image the Docker backend uses when Options.Image
// is empty: $DBROUTER_RING_IMAGE, or LocalImage when it is unset or empty.
func DefaultImage() string {
	if img := strings.TrimSpace(os.Getenv(ImageEnv)); img != "" {
		return img
	}
	return LocalImage
}

// dockerEnv is what a Docker-backed Harness shares between its nodes: the
// engine client, the image, and the networks it created.
type dockerEnv struct {
	id        string // harness id: the labelHarness value and name prefix
	cli       *testcontainers.DockerClient
	image     string
	extraArgs []string // Options.extraArgs
	logf      func(string, ...any)

	mu       sync.Mutex
	networks []*testcontainers.DockerNetwork
}

// labels returns the labels for one new Docker object.
func (e *dockerEnv) labels() map[string]string {
	return map[string]string{labelRingtest: "1", labelHarness: e.id}
}

var testcontainersEnvOnce sync.Once

// prepareTestcontainersEnv sets the environment testcontainers-go reads
// (once, at its first use) unless the user has set it: the reaper (Ryuk)
// is disabled because its image cannot be pulled without a registry (Close
// removes everything instead), and mapped ports are reported on 127.0.0.1.
// When the Go program itself runs in a container, testcontainers-go would
// otherwise report the default gateway as the host of every mapped port.
func prepareTestcontainersEnv() {
	testcontainersEnvOnce.Do(func() {
		for k, v := range map[string]string{
			"TESTCONTAINERS_RYUK_DISABLED": "true",
			"TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
		} {
			if os.Getenv(k) == "" {
				os.Setenv(k, v)
			}
		}
	})
}

// startDocker is Start for the Docker backend.
func startDocker(ctx context.Context, opts Options) (*Harness, error) {
	begin := time.Now()
	if isMySQLImage(opts.Image) {
		return nil, fmt.Errorf("ringtest: docker backend: image %s is MySQL; rings need MariaDB "+
			"(GTID domains, MASTER_USE_GTID): use %s or an official mariadb image", opts.Image, LocalImage)
	}
	prepareTestcontainersEnv()
	cli, err := dockerClient(ctx)
	if err != nil {
		return nil, err
	}
	id, err := randomID()
	if err != nil {
		cli.Close()
		return nil, err
	}
	env := &dockerEnv{id: "ringtest-" + id, cli: cli, image: opts.Image, extraArgs: opts.extraArgs, logf: opts.Logf}
	h := &Harness{opts: opts, docker: env}
	if err := env.ensureImage(ctx); err != nil {
		return nil, errors.Join(err, h.Close())
	}
	if err := h.startDocker(ctx); err != nil {
		return nil, errors.Join(err, h.Close())
	}
	opts.Logf("ringtest: %d ring(s) x %d node(s) ready on Docker in %v (image %s, harness %s)",
		opts.Clusters, opts.Nodes, time.Since(begin).Round(time.Millisecond), opts.Image, env.id)
	return h, nil
}

// dockerClient connects to the Docker engine that testcontainers-go selects
// (DOCKER_HOST, its properties file, the default socket; opts override
// them) and checks that it answers.
func dockerClient(ctx context.Context, opts ...client.Opt) (*testcontainers.DockerClient, error) {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx, opts...)
	if err == nil {
		// The client may fall back to an endpoint it has not tried.
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = cli.Ping(pctx, client.PingOptions{})
		cancel()
		if err != nil {
			cli.Close()
		}
	}
	if err != nil {
		where := ""
		if h := os.Getenv("DOCKER_HOST"); h != "" {
			where = " (DOCKER_HOST=" + h + ")"
		}
		return nil, fmt.Errorf("ringtest: docker backend: no Docker engine answers%s: %w; "+
			"start the Docker daemon or use %s=%s", where, err, BackendEnv, BackendNative)
	}
	return cli, nil
}

func (h *Harness) startDocker(ctx context.Context) error {
	o := &h.opts
	env := h.docker
	t0 := time.Now()
	var all []*dockerNode
	for k := 0; k < o.Clusters; k++ {
		r := &Ring{name: fmt.Sprintf("ring%d", k), h: h}
		h.rings = append(h.rings, r)
		// Two networks per ring: "front", the only one ports are published
		// from, and "repl", internal, where the nodes replicate by alias.
		front, err := env.newNetwork(ctx, false)
		if err != nil {
			return err
		}
		repl, err := env.newNetwork(ctx, true)
		if err != nil {
			return err
		}
		for i := 0; i < o.Nodes; i++ {
			n := &dockerNode{
				env: env, ring: r.name, idx: i, id: 1000*k + i + 1, n: o.Nodes,
				name:    fmt.Sprintf("%s-%s-n%d", env.id, r.name, i),
				alias:   fmt.Sprintf("node%d", i),
				front:   front.Name,
				repl:    repl.Name,
				timeout: o.StartTimeout, logf: o.Logf,
			}
			n.volume = n.name
			if o.Proxy {
				if n.proxy, err = newProxy(n.serverAddr); err != nil {
					return err
				}
			}
			r.servers = append(r.servers, n)
			all = append(all, n)
		}
	}

	pickPort := newPortPicker()
	if err := concurrently(all, func(n *dockerNode) error {
		if err := n.create(ctx, pickPort); err != nil {
			return err
		}
		return bootstrap(ctx, n, o.Database, o.User, o.Password)
	}); err != nil {
		return err
	}
	o.Logf("ringtest: containers started and bootstrapped in %v", time.Since(t0).Round(time.Millisecond))
	return h.wireRings(ctx)
}

// newNetwork creates a bridge network labelled for this harness; internal
// networks have no route out of the host.
func (e *dockerEnv) newNetwork(ctx context.Context, internal bool) (*testcontainers.DockerNetwork, error) {
	opts := []tcnetwork.NetworkCustomizer{tcnetwork.WithLabels(e.labels())}
	if internal {
		opts = append(opts, tcnetwork.WithInternal())
	}
	nw, err := tcnetwork.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("ringtest: docker backend: creating a network: %w", err)
	}
	e.mu.Lock()
	e.networks = append(e.networks, nw)
	e.mu.Unlock()
	return nw, nil
}

// imageMu serialises image checks and builds within the process; the build
// script serialises across processes with flock.
var imageMu sync.Mutex

// ensureImage makes sure the image exists: present images are used as they
// are, absent local ones are built, others are left to be pulled.
func (e *dockerEnv) ensureImage(ctx context.Context) error {
	imageMu.Lock()
	defer imageMu.Unlock()
	_, err := e.cli.ImageInspect(ctx, e.image)
	if err == nil {
		return nil
	}
	if !errdefs.IsNotFound(err) {
		return fmt.Errorf("ringtest: docker backend: inspecting image %s: %w", e.image, err)
	}
	if !strings.HasPrefix(e.image, localImageRepo) {
		e.logf("ringtest: image %s is absent; it will be pulled (this needs a registry)", e.image)
		return nil
	}
	script, err := writeBuildScript()
	if err != nil {
		return err
	}
	defer os.Remove(script)
	e.logf("ringtest: image %s is absent; building it with the embedded build-mariadb-image.sh (about a minute)", e.image)
	t0 := time.Now()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script, e.image)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ringtest: docker backend: building image %s failed (bash build-mariadb-image.sh %s: %w):\n%s",
			e.image, e.image, err, tail(out.String(), 6000))
	}
	e.logf("ringtest: image %s built in %v", e.image, time.Since(t0).Round(time.Second))
	return nil
}

// buildMariaDBImageScript is ringtest/build-mariadb-image.sh, embedded so
// that the image can be built wherever the package was compiled from: a
// checkout, the module cache, or a -trimpath build.
//
//go:embed build-mariadb-image.sh
var buildMariaDBImageScript []byte

// writeBuildScript writes the embedded build script to a new temporary
// file and returns its path; the caller removes it.
func writeBuildScript() (string, error) {
	f, err := os.CreateTemp("", "dbrouter-build-mariadb-image-*.sh")
	if err != nil {
		return "", fmt.Errorf("ringtest: docker backend: writing the image build script: %w", err)
	}
	_, err = f.Write(buildMariaDBImageScript)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("ringtest: docker backend: writing the image build script: %w", err)
	}
	return f.Name(), nil
}

// close removes the networks, then sweeps every container, network and
// volume labelled with this harness's id (left by a failed create, say) and
// checks that none is left.
func (e *dockerEnv) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	e.mu.Lock()
	nets := e.networks
	e.networks = nil
	e.mu.Unlock()
	for _, nw := range nets {
		if err := nw.Remove(ctx); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("ringtest: removing network %s: %w", nw.Name, err))
		}
	}
	if err := e.sweep(ctx); err != nil {
		errs = append(errs, err)
	}
	left, err := e.leftovers(ctx)
	if err != nil {
		errs = append(errs, err)
	} else if len(left) > 0 {
		errs = append(errs, fmt.Errorf("ringtest: docker objects of harness %s left after Close: %s", e.id, strings.Join(left, ", ")))
	}
	if err := e.cli.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sweep force-removes whatever still carries this harness's label.
func (e *dockerEnv) sweep(ctx context.Context) error {
	f := make(client.Filters).Add("label", labelHarness+"="+e.id)
	var errs []error
	cs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		errs = append(errs, err)
	}
	for _, c := range cs.Items {
		if _, err := e.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	ns, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range ns.Items {
		if _, err := e.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	vs, err := e.cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		errs = append(errs, err)
	}
	for _, v := range vs.Items {
		if _, err := e.cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ringtest: docker cleanup of harness %s: %w", e.id, err)
	}
	return nil
}

// leftovers lists the containers, networks and volumes that still carry
// this harness's label.
func (e *dockerEnv) leftovers(ctx context.Context) ([]string, error) {
	f := make(client.Filters).Add("label", labelHarness+"="+e.id)
	var left []string
	cs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	for _, c := range cs.Items {
		left = append(left, "container "+strings.Join(c.Names, ","))
	}
	ns, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	for _, n := range ns.Items {
		left = append(left, "network "+n.Name)
	}
	vs, err := e.cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	for _, v := range vs.Items {
		left = append(left, "volume "+v.Name)
	}
	slices.Sort(left)
	return left, nil
}

// isMySQLImage reports whether image names an Oracle MySQL image such as
// "mysql:8.4" or "docker.io/library/mysql".
func isMySQLImage(image string) bool {
	repo := image
	if i := strings.LastIndexByte(repo, '/'); i >= 0 {
		repo = repo[i+1:]
	}
	repo, _, _ = strings.Cut(repo, "@")
	repo, _, _ = strings.Cut(repo, ":")
	return repo == "mysql" || strings.HasPrefix(repo, "mysql-server")
}

// randomID returns 8 random hex digits.
func randomID() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ringtest: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// noopLogger silences testcontainers-go; the harness logs what matters.
var noopLogger = tclog.NewNoopLogger()
