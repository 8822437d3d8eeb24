package sprites

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Entry describes one file in a directory listing.
type Entry struct {
	Name    string
	Path    string
	Type    string // as the server says: "file", "directory", …
	Size    int64
	Mode    fs.FileMode // permission bits (and the directory bit for directories)
	ModTime time.Time
	IsDir   bool
}

type entryJSON struct {
	Name    string   `json:"name"`
	Path    string   `json:"path"`
	Type    string   `json:"type"`
	Size    int64    `json:"size"`
	Mode    string   `json:"mode"`
	ModTime flexTime `json:"modTime"`
	IsDir   bool     `json:"isDir"`
}

// fsRequest is a filesystem call on path of sprite name.
func fsRequest(method, name, op, p string, q url.Values) *request {
	if q == nil {
		q = url.Values{}
	}
	q.Set("path", p)
	q.Set("workingDir", "/")
	return &request{method: method, path: spritePath(name, "/fs/"+op), query: q, fs: true}
}

func checkPath(name, p string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if !path.IsAbs(p) {
		return fmt.Errorf("sprites: path %q is not absolute", p)
	}
	return nil
}

// pathError wraps err as io/fs does, so errors.Is(err, fs.ErrNotExist)
// works on filesystem answers.
func pathError(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}

// modeString is the octal form the API takes ("0644").
func modeString(m fs.FileMode) string {
	bits := m.Perm()
	if m&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return fmt.Sprintf("%04o", uint32(bits))
}

// parseMode reads "0644" or "0o644"; anything else is 0.
func parseMode(s string) fs.FileMode {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0
	}
	m := fs.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// WriteFile writes data to path in sprite name with mode, creating its
// parent directories.
func (c *Client) WriteFile(ctx context.Context, name, p string, data []byte, mode fs.FileMode) error {
	if err := checkPath(name, p); err != nil {
		return err
	}
	if data == nil {
		data = []byte{}
	}
	r := fsRequest(http.MethodPut, name, "write", p, url.Values{
		"mkdirParents": {"true"},
		"mode":         {modeString(mode)},
	})
	r.body, r.ctype, r.retry = data, "application/octet-stream", retrySafe
	return pathError("write", p, c.doJSON(ctx, r, nil))
}

// ReadFile returns the content of path in sprite name, at most
// Config.MaxFileSize bytes. A missing file is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (c *Client) ReadFile(ctx context.Context, name, p string) ([]byte, error) {
	if err := checkPath(name, p); err != nil {
		return nil, err
	}
	r := fsRequest(http.MethodGet, name, "read", p, nil)
	r.retry, r.accept = retrySafe, "application/octet-stream"
	resp, cancel, err := c.send(ctx, r)
	if err != nil {
		return nil, pathError("read", p, err)
	}
	defer cancel()
	defer resp.Body.Close()
	max := c.cfg.MaxFileSize
	if resp.ContentLength > max {
		return nil, pathError("read", p, fmt.Errorf("sprites: file is %d bytes, more than the %d allowed", resp.ContentLength, max))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, pathError("read", p, err)
	}
	if int64(len(data)) > max {
		return nil, pathError("read", p, fmt.Errorf("sprites: file larger than the %d bytes allowed", max))
	}
	return data, nil
}

// OpenFile streams the content of path in sprite name. The answer must
// start within CallTimeout; after that each read must make progress
// within CallTimeout, however long the whole file takes. The caller
// closes the reader.
func (c *Client) OpenFile(ctx context.Context, name, p string) (io.ReadCloser, error) {
	if err := checkPath(name, p); err != nil {
		return nil, err
	}
	// The body outlives the attempt's deadline, so the attempt runs under
	// a context this reader cancels itself, and an idle timer replaces the
	// deadline.
	sctx, scancel := context.WithCancel(ctx)
	r := fsRequest(http.MethodGet, name, "read", p, nil)
	r.retry, r.accept = retrySafe, "application/octet-stream"
	r.timeout = -1 // no per-attempt deadline: the idle timer below is it
	resp, cancel, err := c.sendStream(sctx, r)
	if err != nil {
		scancel()
		return nil, pathError("read", p, err)
	}
	return newIdleReader(resp.Body, c.cfg.CallTimeout, func() { cancel(); scancel() }), nil
}

// sendStream is send for answers read over an unbounded time: each
// attempt gets CallTimeout to produce its headers only.
func (c *Client) sendStream(ctx context.Context, r *request) (*http.Response, context.CancelFunc, error) {
	for n := 1; ; n++ {
		actx, acancel := context.WithCancel(ctx)
		headers := time.AfterFunc(c.cfg.CallTimeout, acancel)
		resp, cancel, err := c.attempt(actx, r)
		stopped := headers.Stop()
		if err == nil {
			if !stopped {
				// The timer fired as the answer came: the body is already
				// cancelled.
				resp.Body.Close()
				cancel()
				acancel()
				return nil, nil, fmt.Errorf("sprites: %s: no answer within %s", r.op(), c.cfg.CallTimeout)
			}
			return resp, func() { cancel(); acancel() }, nil
		}
		acancel()
		if !stopped && ctx.Err() == nil {
			err = fmt.Errorf("sprites: %s: no answer within %s", r.op(), c.cfg.CallTimeout)
		}
		delay, ok := c.retryable(ctx, r.retry, n, err)
		if !ok {
			return nil, nil, err
		}
		c.log.Debug("sprites: retrying", "op", r.op(), "attempt", n, "delay", delay, "err", err)
		if err := sleep(ctx, delay); err != nil {
			return nil, nil, err
		}
	}
}

// idleReader ends a body when one Read waits longer than idle. Time the
// caller spends between reads does not count.
type idleReader struct {
	rc    io.ReadCloser
	idle  time.Duration
	timer *time.Timer
	stop  func()
	once  sync.Once
	timed atomic.Bool
}

func newIdleReader(rc io.ReadCloser, idle time.Duration, stop func()) *idleReader {
	r := &idleReader{rc: rc, idle: idle, stop: stop}
	r.timer = time.AfterFunc(time.Hour, func() {
		r.timed.Store(true)
		r.once.Do(r.stop)
	})
	r.timer.Stop()
	return r
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.timer.Reset(r.idle)
	n, err := r.rc.Read(p)
	r.timer.Stop()
	if err != nil && err != io.EOF && r.timed.Load() {
		err = fmt.Errorf("sprites: read stalled for %s: %w", r.idle, err)
	}
	return n, err
}

func (r *idleReader) Close() error {
	r.timer.Stop()
	err := r.rc.Close()
	r.once.Do(r.stop)
	return err
}

// ListDir lists directory path of sprite name (its whole tree when
// recursive). A file path lists that file alone.
func (c *Client) ListDir(ctx context.Context, name, p string, recursive bool) ([]Entry, error) {
	if err := checkPath(name, p); err != nil {
		return nil, err
	}
	q := url.Values{}
	if recursive {
		q.Set("recursive", "true")
	}
	r := fsRequest(http.MethodGet, name, "list", p, q)
	r.retry = retrySafe
	var out struct {
		Entries []entryJSON `json:"entries"`
	}
	if err := c.doJSON(ctx, r, &out); err != nil {
		return nil, pathError("list", p, err)
	}
	entries := make([]Entry, 0, len(out.Entries))
	for _, e := range out.Entries {
		m := parseMode(e.Mode)
		if e.IsDir {
			m |= fs.ModeDir
		}
		entries = append(entries, Entry{Name: e.Name, Path: e.Path, Type: e.Type, Size: e.Size,
			Mode: m, ModTime: time.Time(e.ModTime), IsDir: e.IsDir})
	}
	return entries, nil
}

// Remove deletes path of sprite name (a directory and everything in it
// when recursive). A missing path is success.
func (c *Client) Remove(ctx context.Context, name, p string, recursive bool) error {
	if err := checkPath(name, p); err != nil {
		return err
	}
	q := url.Values{}
	if recursive {
		q.Set("recursive", "true")
	}
	r := fsRequest(http.MethodDelete, name, "delete", p, q)
	r.retry = retrySafe
	err := c.doJSON(ctx, r, nil)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return pathError("remove", p, err)
}

// Chmod sets the mode of path of sprite name (and of everything under it
// when recursive).
func (c *Client) Chmod(ctx context.Context, name, p string, mode fs.FileMode, recursive bool) error {
	if err := checkPath(name, p); err != nil {
		return err
	}
	body := jsonBody(map[string]any{"path": p, "workingDir": "/", "mode": modeString(mode), "recursive": recursive})
	r := &request{method: http.MethodPost, path: spritePath(name, "/fs/chmod"), body: body,
		ctype: "application/json", retry: retrySafe, fs: true}
	return pathError("chmod", p, c.doJSON(ctx, r, nil))
}
