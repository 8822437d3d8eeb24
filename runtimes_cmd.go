package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/runner/runtimes"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// runtimeDirFlag defines --runtime-dir, the cache of installed agent CLIs,
// for serve and for the runtimes commands alike, so that both read the
// same flag and variable.
func runtimeDirFlag(f *pflag.FlagSet, env envReader, dir *string) {
	f.StringVar(dir, "runtime-dir", env.str("AOD_RUNTIME_DIR", ""),
		"shared cache of installed agent CLIs (default <data-dir>/runtimes; env AOD_RUNTIME_DIR)")
}

// runtimesCmd lists the agent CLIs sessions run and installs them into the
// runtime cache ahead of the first session that needs one.
func runtimesCmd(getenv func(string) string, dataDir *string, stdout, stderr io.Writer) *cobra.Command {
	var runtimeDir string
	cmd := &cobra.Command{
		Use:   "runtimes",
		Short: "List the agent CLIs (claude, codex, gemini, opencode) and install them ahead of use",
	}
	runtimeDirFlag(cmd.PersistentFlags(), envReader{getenv: getenv, err: new(error)}, &runtimeDir)

	// cache opens the cache serve would use with the same flags. Only one
	// under the data dir needs a data dir serve has made.
	cache := func(log *slog.Logger) (*runtimes.Installer, string, error) {
		if runtimeDir == "" {
			if err := existingDataDir(*dataDir); err != nil {
				return nil, "", fmt.Errorf("%w (or --runtime-dir to fill a cache of its own)", err)
			}
		}
		dir, err := runtimes.CacheDir(*dataDir, runtimeDir)
		if err != nil {
			return nil, "", err
		}
		return runtimes.NewInstaller(dir, local.FindBinary("npm"), log), dir, nil
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "Show each agent runtime's npm package, its pinned version and whether it is installed (and where)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in, _, err := cache(slog.New(slog.DiscardHandler))
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUNTIME\tPACKAGE\tVERSION\tINSTALLED")
			for _, name := range catalogue.AgentRuntimes() {
				p := pinned(name)
				where := "no"
				if in.Installed(p) {
					where = "yes, " + in.Path(p)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, p.Name, p.Version, where)
			}
			return tw.Flush()
		},
	}

	install := &cobra.Command{
		Use:   "install [NAME...]",
		Short: "Install agent CLIs from npm into the runtime cache (all of them when no NAME is given)",
		Long: `Install the agent CLIs sessions run from npm into the runtime cache, so
that the first session of each runtime does not wait minutes for npm. With
no NAME every agent runtime is installed (` + strings.Join(catalogue.AgentRuntimes(), ", ") + `);
those already in the cache are skipped.

The cache is the one aod serve uses with the same flags: --runtime-dir (env
AOD_RUNTIME_DIR), else <data-dir>/runtimes, which needs a data dir that aod
serve has made. It is safe beside a running server: each version installs
once, under a lock the server takes too. Progress goes to stderr: a live
line on a terminal, plain lines otherwise (CI logs).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := agentRuntimes(args)
			if err != nil {
				return err
			}
			prog := newProgress(stderr, getenv)
			in, dir, err := cache(slog.New(progressLog{p: prog}))
			if err != nil {
				return err
			}
			var todo []string
			for _, name := range names {
				if p := pinned(name); in.Installed(p) {
					fmt.Fprintf(stdout, "%s %s: already installed\n", name, p.Version)
				} else {
					todo = append(todo, name)
				}
			}
			if len(todo) > 0 {
				fmt.Fprintf(stderr, "runtime cache: %s\n", dir)
			}
			for i, name := range todo {
				p := pinned(name)
				label := name + "@" + p.Version
				if len(todo) > 1 {
					label += fmt.Sprintf(" [%d/%d]", i+1, len(todo))
				}
				prog.begin(label, p.Name, func() int64 { return in.DiskUsage(p) })
				start := time.Now()
				_, err := in.Ensure(cmd.Context(), p)
				prog.end()
				if err != nil {
					return fmt.Errorf("install %s@%s: %w", name, p.Version, err)
				}
				fmt.Fprintf(stdout, "installed %s@%s in %.1fs (%s)\n", name, p.Version, time.Since(start).Seconds(), megabytes(in.DiskUsage(p)))
			}
			return nil
		},
	}
	cmd.AddCommand(list, install)
	return cmd
}

// agentRuntimes checks the names given against the catalogue's agent
// runtimes, all of them when none is given, each once.
func agentRuntimes(args []string) ([]string, error) {
	known := catalogue.AgentRuntimes()
	if len(args) == 0 {
		return known, nil
	}
	var out []string
	for _, name := range args {
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("unknown agent runtime %q: want one or more of %s", name, strings.Join(known, ", "))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// pinned is the npm package of an agent runtime at the version aod serve
// installs (serve overrides no pin).
func pinned(name string) runtimes.Package {
	return *runtimes.Pin(runtimes.For(name, runtimes.Endpoints{}), nil)
}

// megabytes renders a byte count for people: 0.4 MB, 12.3 MB, 235 MB.
func megabytes(n int64) string {
	mb := float64(n) / 1e6
	if mb < 100 {
		return fmt.Sprintf("%.1f MB", mb)
	}
	return fmt.Sprintf("%.0f MB", mb)
}

// progress shows how installs go. On a terminal one status line (spinner,
// runtime, bytes written so far, elapsed time) is redrawn in place and
// erased when the install ends; anywhere else (a CI log) it writes plain
// lines only, with no control characters, and one every plainEvery while
// npm works so a long install shows it is alive. Lines npm prints are kept
// in both cases.
type progress struct {
	w     io.Writer
	width func() int // the terminal's columns; nil when w is no terminal
	every time.Duration

	mu    sync.Mutex
	label string
	start time.Time
	bytes int64
	frame int
	shown bool // a status line is on the terminal
	stop  chan struct{}
	done  chan struct{}
}

const (
	redrawEvery = 100 * time.Millisecond // a terminal's status line
	measureRate = 5                      // the bytes are counted every 5th redraw
	plainEvery  = 15 * time.Second       // a "still installing" line elsewhere
)

// newProgress shows progress on w: live when w is a terminal and TERM is
// not "dumb".
func newProgress(w io.Writer, getenv func(string) string) *progress {
	p := &progress{w: w, every: plainEvery}
	if f, ok := w.(*os.File); ok && getenv("TERM") != "dumb" {
		fd := int(f.Fd())
		if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
			p.every = redrawEvery
			p.width = func() int {
				if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
					return int(ws.Col)
				}
				return 80
			}
		}
	}
	return p
}

// begin starts showing the install of label (runtime@version) from the npm
// package pkg; size reports the bytes written so far.
func (p *progress) begin(label, pkg string, size func() int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.label, p.start, p.bytes, p.frame = label, time.Now(), 0, 0
	if p.width == nil {
		fmt.Fprintf(p.w, "installing %s from npm (%s) …\n", label, pkg)
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go p.run(size, p.stop, p.done)
}

// run redraws the status line (or writes a plain line) every p.every
// until end.
func (p *progress) run(size func() int64, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(p.every)
	defer t.Stop()
	for tick := 0; ; tick++ {
		if p.width == nil || tick%measureRate == 0 {
			n := size()
			p.mu.Lock()
			p.bytes = n
			p.mu.Unlock()
		}
		p.mu.Lock()
		switch {
		case p.width != nil:
			p.draw()
		case tick > 0:
			fmt.Fprintf(p.w, "  still installing %s: %s after %s\n", p.label, megabytes(p.bytes), time.Since(p.start).Round(time.Second))
		}
		p.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

var spinner = []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")

// draw writes the status line over the last one; p.mu is held.
func (p *progress) draw() {
	line := fmt.Sprintf("%c installing %s  %s  %.1fs", spinner[p.frame%len(spinner)], p.label, megabytes(p.bytes), time.Since(p.start).Seconds())
	p.frame++
	if r := []rune(line); len(r) > p.width()-1 {
		line = string(r[:max(p.width()-1, 0)])
	}
	fmt.Fprint(p.w, "\r\x1b[K"+line)
	p.shown = true
}

// clear erases the status line; p.mu is held.
func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

// note keeps a line above the status line (what npm said, or that the
// install waits for another one).
func (p *progress) note(line string) {
	line = strings.TrimSpace(controls.ReplaceAllString(escapes.ReplaceAllString(line, ""), " "))
	if line == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, "  %s\n", line)
	if p.width != nil && p.stop != nil {
		p.draw()
	}
}

// end stops showing the install and erases the status line.
func (p *progress) end() {
	p.mu.Lock()
	stop, done := p.stop, p.done
	p.stop = nil
	p.mu.Unlock()
	close(stop)
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

// escapes and controls match terminal escape sequences and other control
// characters: npm's lines reach the output without them.
var (
	escapes  = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]`)
	controls = regexp.MustCompile(`[\x00-\x1f\x7f\x{80}-\x{9f}]`)
)

// progressLog receives the installer's log (what it also tells a server's
// log) and shows it as notes: npm's lines and such events as waiting for
// another install of the same runtime. The start and the end of an install
// the command reports itself.
type progressLog struct{ p *progress }

func (h progressLog) Enabled(context.Context, slog.Level) bool { return true }

func (h progressLog) Handle(_ context.Context, r slog.Record) error {
	var line string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "line" {
			line = a.Value.String()
		}
		return line == ""
	})
	switch {
	case line != "":
		h.p.note(line)
	case r.Message == "installing runtime" || r.Message == "installed runtime":
	default:
		h.p.note(r.Message)
	}
	return nil
}

func (h progressLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h progressLog) WithGroup(string) slog.Handler      { return h }
