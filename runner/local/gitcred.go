package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Git inside a bubblewrap sprite gets a repository's token from aod, never
// from a file: the sprite's git config names GitCredentialHelper (the
// sprite's init binary in its helper role) for each repository URL, and the
// helper asks the server over the sprite's own egress socket with a request
// to the proxy itself (credentialPath). The server answers from the session's
// sealed resources. Each command's socket is served for its sprite alone,
// so no sprite can ask for another's tokens, and the server gives a token
// only for the URL of the resource it belongs to.

// GitCredentialHelper is the credential.helper value that makes git inside
// a bubblewrap sprite ask aod (see credentialHelperMain).
const GitCredentialHelper = initPath + " " + credentialHelperArg

const (
	credentialHelperArg = "git-credential"
	credentialPath      = "/aod/git-credential"
	// maxCredentialBytes bounds a credential request and answer: git
	// sends a handful of short lines.
	maxCredentialBytes = 16 << 10
	credentialTimeout  = 30 * time.Second
)

// GitCredential is what git asks a credential helper about: the URL's
// protocol, host (with any port) and path (only with credential.useHttpPath).
type GitCredential struct {
	Protocol, Host, Path string
}

// GitCredentials answers a sprite's git: the username and password for
// the repository c names, or ok false. sprite is the asking sprite's name.
type GitCredentials func(ctx context.Context, sprite string, c GitCredential) (username, password string, ok bool)

// readCredential parses git's credential format (key=value lines, up to a
// blank line or the end), keeping the keys GitCredential has. Input past
// maxCredentialBytes is an error.
func readCredential(r io.Reader) (GitCredential, error) {
	var c GitCredential
	sc := bufio.NewScanner(io.LimitReader(r, maxCredentialBytes+1))
	sc.Buffer(make([]byte, 4096), maxCredentialBytes+1)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		n += len(line) + 1
		if n > maxCredentialBytes {
			return c, errors.New("credential request too large")
		}
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "protocol":
			c.Protocol = v
		case "host":
			c.Host = v
		case "path":
			c.Path = v
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return c, errors.New("credential request too large")
		}
		return c, err
	}
	return c, nil
}

// credentialAnswer is git's answer format for a username and password; ""
// when either could break a line of it.
func credentialAnswer(username, password string) string {
	if strings.ContainsAny(username+password, "\r\n\x00") {
		return ""
	}
	return "username=" + username + "\npassword=" + password + "\n"
}

// credentialHandler serves sprite name's credential requests on its proxy
// socket; nil when the backend has no GitCredentials.
func (e *egressNet) credentialHandler(name string) http.Handler {
	if e.creds == nil {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path != credentialPath {
			http.Error(w, "aod: no such service", http.StatusNotFound)
			return
		}
		if r.Method != http.MethodPost {
			http.Error(w, "aod: POST a git credential request", http.StatusMethodNotAllowed)
			return
		}
		c, err := readCredential(http.MaxBytesReader(w, r.Body, maxCredentialBytes))
		if err != nil {
			http.Error(w, "aod: bad credential request: "+err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), credentialTimeout)
		defer cancel()
		var answer string
		if user, pass, ok := e.creds(ctx, name, c); ok {
			answer = credentialAnswer(user, pass)
		}
		if answer == "" {
			http.Error(w, "aod: no credential for this URL", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, answer)
	})
}

// credentialHelperMain is git's credential helper inside a sprite
// ("aod-init git-credential get"): for get it asks the server through the
// sprite's egress socket and prints what it answers; store and erase are
// the server's business, so it ignores them. It returns the exit code.
func credentialHelperMain(socket string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: aod-init git-credential get|store|erase")
		return 2
	}
	c, err := readCredential(stdin)
	if err != nil {
		fmt.Fprintln(stderr, "aod git credential helper:", err)
		return 1
	}
	if args[0] != "get" {
		return 0
	}
	answer, err := askCredential(socket, c)
	if err != nil {
		fmt.Fprintln(stderr, "aod git credential helper:", err)
		return 1
	}
	io.WriteString(stdout, answer)
	return 0
}

// askCredential asks the server on socket for c; "" when it has none.
func askCredential(socket string, c GitCredential) (string, error) {
	if strings.ContainsAny(c.Protocol+c.Host+c.Path, "\r\n\x00") {
		return "", nil
	}
	client := &http.Client{
		Timeout: credentialTimeout,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		},
	}
	body := "protocol=" + c.Protocol + "\nhost=" + c.Host + "\npath=" + c.Path + "\n"
	resp, err := client.Post("http://aod"+credentialPath, "text/plain", strings.NewReader(body))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", errors.New("no aod socket in this sprite")
		}
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCredentialBytes+1))
	switch {
	case err != nil:
		return "", err
	case resp.StatusCode == http.StatusNotFound:
		return "", nil
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("aod answered %s: %s", resp.Status, bytes.TrimSpace(data[:min(len(data), 200)]))
	case len(data) > maxCredentialBytes:
		return "", errors.New("answer too large")
	}
	return string(data), nil
}
