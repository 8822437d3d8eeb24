package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/aod/aod/runner/egress"
)

// A bubblewrap sprite runs every command under its own init: aod's binary,
// bound read-only into the sprite at initPath and recognised by that name
// (see init below). It starts as host root inside the sandbox's new mount,
// pid, network, IPC and UTS namespaces, and
//
//   - starts the command in a user namespace of its own that maps the
//     sprite's range of host uids (uid 0 inside is the range's first host
//     uid: unprivileged on the host, owning nothing outside the sprite), so
//     kernel tunables, root-only files and every other sprite's files are
//     out of reach and RLIMIT_NPROC holds;
//   - relays 127.0.0.1:3128 (and the model endpoints on the host's
//     loopback) to the egress proxy's socket: the sprite's network
//     namespace has nothing else;
//   - sets the sprite's rlimits, which the command inherits;
//   - then waits for the command and exits with its status.
//
// Being the process bubblewrap starts, it is what bwrap waits for; a group
// kill from the host reaches it and the command alike.
//
// The same binary is also the sprite's git credential helper ("aod-init
// git-credential get", see gitcred.go).
const (
	initPath = "/aod/bin/aod-init"
	initName = "aod-init"
)

func init() {
	if filepath.Base(os.Args[0]) == initName {
		os.Exit(initMain(os.Args[1:]))
	}
}

// initArgs is the command line of a sprite's init.
type initArgs struct {
	uidBase int    // first host uid of the sprite's range; 0: no user namespace of its own
	socket  string // the egress proxy's socket; "": no relay
	// cgroupFds are cgroup.procs files open for writing: init joins each
	// before the command starts.
	cgroupFds []int
	forwards  []string
	limits    Limits
	argv      []string
	// A parked init (a warm sprite, see warm.go) starts everything but the
	// command, writes a byte to readyFd, then reads the command as a
	// parkRequest from parkFd.
	parkFd, readyFd int
}

// parkRequest is what a parked init is told to run.
type parkRequest struct {
	Argv     []string `json:"argv"`
	Env      []string `json:"env"`
	Dir      string   `json:"dir"`
	Forwards []string `json:"forwards"`
}

// maxParkRequest bounds a request (the kernel takes at most a few MiB of
// arguments and environment anyway).
const maxParkRequest = 16 << 20

func (a initArgs) args() []string {
	var out []string
	if a.uidBase > 0 {
		out = append(out, "--uid-base", strconv.Itoa(a.uidBase))
	}
	if a.socket != "" {
		out = append(out, "--socket", a.socket)
	}
	for _, f := range a.forwards {
		out = append(out, "--forward", f)
	}
	for _, fd := range a.cgroupFds {
		out = append(out, "--cgroup-fd", strconv.Itoa(fd))
	}
	for _, l := range a.limits.rlimits() {
		out = append(out, "--rlimit", fmt.Sprintf("%d=%d", l.resource, l.value))
	}
	if a.parkFd > 0 {
		out = append(out, "--park-fd", strconv.Itoa(a.parkFd), "--ready-fd", strconv.Itoa(a.readyFd))
	}
	return append(append(out, "--"), a.argv...)
}

func parseInitArgs(args []string) (initArgs, error) {
	var a initArgs
	for len(args) > 0 {
		flag := args[0]
		if flag == "--" {
			a.argv = args[1:]
			switch {
			case a.parkFd > 0 && (len(a.argv) > 0 || a.readyFd == 0):
				return a, errors.New("a parked init takes its command from --park-fd, and needs --ready-fd")
			case a.parkFd == 0 && len(a.argv) == 0:
				return a, errors.New("no command")
			}
			return a, nil
		}
		if len(args) < 2 {
			return a, fmt.Errorf("%s needs a value", flag)
		}
		val := args[1]
		args = args[2:]
		switch flag {
		case "--uid-base":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return a, fmt.Errorf("bad --uid-base %q", val)
			}
			a.uidBase = n
		case "--socket":
			a.socket = val
		case "--forward":
			a.forwards = append(a.forwards, val)
		case "--cgroup-fd", "--park-fd", "--ready-fd":
			fd, err := strconv.Atoi(val)
			if err != nil || fd < 3 {
				return a, fmt.Errorf("bad %s %q", flag, val)
			}
			switch flag {
			case "--cgroup-fd":
				a.cgroupFds = append(a.cgroupFds, fd)
			case "--park-fd":
				a.parkFd = fd
			default:
				a.readyFd = fd
			}
		case "--rlimit":
			r, v, ok := strings.Cut(val, "=")
			res, err1 := strconv.Atoi(r)
			n, err2 := strconv.ParseUint(v, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				return a, fmt.Errorf("bad --rlimit %q", val)
			}
			a.limits.set(res, n)
		default:
			return a, fmt.Errorf("unknown flag %s", flag)
		}
	}
	return a, errors.New("no command (missing --)")
}

// initMain is a sprite's init; it returns the exit code.
func initMain(args []string) int {
	if len(args) == 1 && args[0] == stubFlag {
		return stubMain()
	}
	if len(args) > 0 && args[0] == credentialHelperArg {
		return credentialHelperMain(egressSocket, args[1:], os.Stdin, os.Stdout, os.Stderr)
	}
	a, err := parseInitArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "aod-init:", err)
		return 127
	}
	for _, fd := range a.cgroupFds {
		f := os.NewFile(uintptr(fd), "cgroup.procs")
		_, err := f.WriteString("0")
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "aod-init: join the sprite's cgroup:", err)
			return 127
		}
	}
	// Limits set here are inherited by the command. RLIMIT_NPROC counts
	// the processes of the command's own (unprivileged) host uid.
	for _, l := range a.limits.rlimits() {
		lim := syscall.Rlimit{Cur: l.value, Max: l.value}
		if err := syscall.Setrlimit(l.resource, &lim); err != nil {
			fmt.Fprintf(os.Stderr, "aod-init: setrlimit %d: %v\n", l.resource, err)
			return 127
		}
	}
	if a.socket != "" {
		// The relay to the egress proxy, bound before the command starts.
		if err := egress.Relay(context.Background(), egress.RelayAddr, a.socket, a.forwards); err != nil {
			fmt.Fprintln(os.Stderr, "aod-init: egress relay:", err)
			return 127
		}
	}
	// A group signal reaches the command directly; init only has to
	// outlive it. (Caught, not ignored: an ignored signal would stay
	// ignored in the command.)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	go func() {
		for range sigs {
		}
	}()
	if a.parkFd > 0 {
		return parked(a)
	}
	return a.run(a.argv, os.Environ(), "")
}

// run starts argv as the sprite's command and waits for it.
func (a initArgs) run(argv, env []string, dir string) int {
	path := argv[0]
	if !strings.Contains(path, "/") {
		if path = lookPathIn(path, envValue(env, "PATH")); path == "" {
			fmt.Fprintf(os.Stderr, "aod-init: %s: command not found\n", argv[0])
			return 127
		}
	}
	cmd := a.command(path, argv, env, dir)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "aod-init: %s: %v\n", argv[0], err)
		return 127
	}
	return status(cmd)
}

// command is a process of the sprite: in its own user namespace mapping
// the sprite's uid range when it has one, killed if the init dies.
func (a initArgs) command(path string, argv, env []string, dir string) *exec.Cmd {
	cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Dir: dir, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if a.uidBase > 0 {
		ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: a.uidBase, Size: uidRange}}
		attr.Cloneflags = syscall.CLONE_NEWUSER
		attr.UidMappings, attr.GidMappings = ids, ids
		attr.GidMappingsEnableSetgroups = true
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	cmd.SysProcAttr = attr
	return cmd
}

// status waits for a started command and is its exit status as the
// sprite's: the code, or 128+signal.
func status(cmd *exec.Cmd) int {
	err := cmd.Wait()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		fmt.Fprintf(os.Stderr, "aod-init: %v\n", err)
		return 127
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// parked is a warm sprite's init: it forks the command's process now,
// while nobody waits — a stub (this binary, "aod-init --stub") already in
// the sprite's user namespace, whose fork copies this process's page
// tables (no vfork with a new user namespace) — then parks; given the
// command, it hands it to the stub, which only has to exec it. Where the
// stub cannot start (the binary is not executable by the sprite's
// unprivileged root), the command is started as a cold one would be.
func parked(a initArgs) int {
	syscall.CloseOnExec(a.readyFd) // the server's pipes are not the command's
	syscall.CloseOnExec(a.parkFd)
	stubR, stubW, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "aod-init:", err)
		return 127
	}
	stub := a.command(initPath, []string{initName, stubFlag}, []string{}, "")
	stub.ExtraFiles = []*os.File{stubR}
	if err := stub.Start(); err != nil {
		stub = nil
		stubW.Close()
	}
	stubR.Close()
	req, err := park(a)
	if err == nil && a.socket != "" && len(req.Forwards) > 0 {
		err = egress.Forward(context.Background(), a.socket, req.Forwards)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "aod-init:", err)
		return 127 // the stub exits on its closed pipe, or with us
	}
	if stub == nil {
		return a.run(req.Argv, req.Env, req.Dir)
	}
	data, err := json.Marshal(req)
	if err == nil {
		_, err = stubW.Write(data)
	}
	stubW.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "aod-init: hand the command over:", err)
		return 127
	}
	return status(stub)
}

// stubFlag makes aod-init a parked init's stub.
const stubFlag = "--stub"

// stubMain reads its command from fd 3 and becomes it.
func stubMain() int {
	f := os.NewFile(3, "request")
	data, err := io.ReadAll(io.LimitReader(f, maxParkRequest+1))
	f.Close()
	var req parkRequest
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "aod-init: read the command:", err)
		return 127
	case len(data) == 0:
		return 127 // the init gave up (its warm sprite was discarded)
	case len(data) > maxParkRequest:
		fmt.Fprintln(os.Stderr, "aod-init: command too large")
		return 127
	}
	if err := json.Unmarshal(data, &req); err != nil || len(req.Argv) == 0 {
		fmt.Fprintln(os.Stderr, "aod-init: bad command", err)
		return 127
	}
	path := req.Argv[0]
	if !strings.Contains(path, "/") {
		if path = lookPathIn(path, envValue(req.Env, "PATH")); path == "" {
			fmt.Fprintf(os.Stderr, "aod-init: %s: command not found\n", req.Argv[0])
			return 127
		}
	}
	if req.Dir != "" {
		if err := os.Chdir(req.Dir); err != nil {
			fmt.Fprintf(os.Stderr, "aod-init: %v\n", err)
			return 127
		}
	}
	err = syscall.Exec(path, req.Argv, req.Env)
	fmt.Fprintf(os.Stderr, "aod-init: %s: %v\n", req.Argv[0], err)
	return 127
}

// park says the init is ready, then waits for its command. The server
// closes the pipe after writing it; a pipe closed with nothing in it (the
// warm sprite was discarded) is an error, and the init exits.
func park(a initArgs) (parkRequest, error) {
	var req parkRequest
	ready := os.NewFile(uintptr(a.readyFd), "ready")
	_, err := ready.Write([]byte{1})
	ready.Close()
	if err != nil {
		return req, fmt.Errorf("tell the server the sprite is ready: %w", err)
	}
	f := os.NewFile(uintptr(a.parkFd), "request")
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxParkRequest+1))
	switch {
	case err != nil:
		return req, fmt.Errorf("read the command: %w", err)
	case len(data) == 0:
		return req, errors.New("discarded before a command was given")
	case len(data) > maxParkRequest:
		return req, errors.New("command too large")
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return req, fmt.Errorf("read the command: %w", err)
	}
	if len(req.Argv) == 0 {
		return req, errors.New("no command")
	}
	return req, nil
}
