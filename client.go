package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The client commands speak HTTP to any aod (AOD_API_URL and AOD_API_TOKEN,
// the SDK's variables, or --url and --token) and never touch a data dir.

// exitError ends the process with Code (the turn's exit code for aod run).
type exitError struct {
	Code int
	Msg  string
}

func (e *exitError) Error() string { return e.Msg }

// apiClient is an aod API endpoint and token.
type apiClient struct {
	url, token string
	http       *http.Client
}

func (c *apiClient) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	return res.StatusCode, b, err
}

// call is do for JSON answers: a non-2xx status is an error saying the
// server's detail.
func (c *apiClient) call(ctx context.Context, method, path string, body, out any) error {
	status, b, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		var e struct {
			Detail any    `json:"detail"`
			Hint   string `json:"hint"` // where a missing model key can go
		}
		if json.Unmarshal(b, &e) == nil && e.Detail != nil {
			if e.Hint != "" {
				return fmt.Errorf("%s %s: %d: %v\n%s", method, path, status, e.Detail, e.Hint)
			}
			return fmt.Errorf("%s %s: %d: %v", method, path, status, e.Detail)
		}
		return fmt.Errorf("%s %s: %d", method, path, status)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// streamClient holds each stream on a connection of its own, never one
// shared with API calls.
var streamClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: http.ProxyFromEnvironment}}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// clientFlags adds --url and --token to cmd and returns the client they
// (or AOD_API_URL and AOD_API_TOKEN) name.
func clientFlags(cmd *cobra.Command, getenv func(string) string) func() (*apiClient, error) {
	var url, token string
	cmd.PersistentFlags().StringVar(&url, "url", getenv("AOD_API_URL"), "the aod server (env AOD_API_URL)")
	cmd.PersistentFlags().StringVar(&token, "token", getenv("AOD_API_TOKEN"), "an API token (env AOD_API_TOKEN)")
	return func() (*apiClient, error) {
		if url == "" {
			url = "http://" + defaultListen
		}
		if token == "" {
			return nil, errors.New("no API token: pass --token or set AOD_API_TOKEN (create one in the web UI or with `aod token create`)")
		}
		return &apiClient{url: strings.TrimRight(url, "/"), token: token, http: &http.Client{}}, nil
	}
}

func runCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var agent, environment string
	var timeout int
	var raw bool
	cmd := &cobra.Command{
		Use:   `run --agent NAME|ID [--environment ID] [--timeout S] [--raw] "prompt"`,
		Short: "Start a session on an aod server, stream it, and exit with its turn's exit code",
		Long: `Creates a session of the agent with the prompt, shows its stages on stderr and
its output on stdout as it comes (a shell agent's bytes; an agent CLI's final
answer, or with --raw the CLI's own output), resumes the stream after a
disconnect, and exits with the turn's exit code.`,
		Args: cobra.ExactArgs(1),
	}
	client := clientFlags(cmd, getenv)
	cmd.Flags().StringVar(&agent, "agent", "", "the agent, by name or id (required)")
	cmd.Flags().StringVar(&environment, "environment", "", "an environment id instead of the agent's")
	cmd.Flags().IntVar(&timeout, "timeout", 600, "seconds the turn may run")
	cmd.Flags().BoolVar(&raw, "raw", false, "print the CLI's output as it wrote it")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := client()
		if err != nil {
			return err
		}
		if agent == "" {
			return errors.New("--agent is required")
		}
		ctx := cmd.Context()
		agentID, err := c.agentID(ctx, agent)
		if err != nil {
			return err
		}
		body := map[string]any{"agent_id": agentID, "prompt": args[0], "timeout": timeout}
		if environment != "" {
			body["environment_id"] = environment
		}
		var ack struct {
			ID string `json:"id"`
		}
		if err := c.call(ctx, "POST", "/sessions", body, &ack); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "session %s\n", ack.ID)
		return c.follow(ctx, ack.ID, raw, stdout, stderr)
	}
	return cmd
}

// agentID resolves an agent's name (or id) to its id.
func (c *apiClient) agentID(ctx context.Context, nameOrID string) (string, error) {
	if uuidRE.MatchString(nameOrID) {
		return nameOrID, nil
	}
	var list struct {
		Data []struct{ ID, Name string } `json:"data"`
	}
	if err := c.call(ctx, "GET", "/agents", nil, &list); err != nil {
		return "", err
	}
	for _, a := range list.Data {
		if a.Name == nameOrID {
			return a.ID, nil
		}
	}
	return "", fmt.Errorf("no agent named %q", nameOrID)
}

// follow streams a session to its terminal event, reconnecting from the
// last event id when the connection drops, and returns the turn's ending:
// nil for exit 0, an exitError otherwise.
func (c *apiClient) follow(ctx context.Context, id string, raw bool, stdout, stderr io.Writer) error {
	var sess struct {
		Runtime string `json:"runtime"`
	}
	if err := c.call(ctx, "GET", "/sessions/"+id, nil, &sess); err != nil {
		return err
	}
	showOutput := raw || sess.Runtime == "shell"
	last := ""
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, "GET", c.url+"/sessions/"+id+"/stream", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("Accept", "text/event-stream")
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		res, err := streamClient.Do(req)
		if err == nil && res.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
			res.Body.Close()
			if res.StatusCode/100 == 4 && res.StatusCode != http.StatusTooManyRequests {
				return fmt.Errorf("stream: %d: %s", res.StatusCode, strings.TrimSpace(string(b)))
			}
			err = fmt.Errorf("stream: %d", res.StatusCode)
		}
		if err == nil {
			var end *exitError
			end, last, err = readEvents(res.Body, last, showOutput, stdout, stderr)
			res.Body.Close()
			if end != nil {
				if end.Code == 0 && end.Msg == "" {
					if !showOutput {
						c.printResult(ctx, id, stdout)
					}
					return nil
				}
				if !showOutput {
					c.printResult(ctx, id, stdout)
				}
				return end
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := time.Duration(min(attempt+1, 10)) * 500 * time.Millisecond
		fmt.Fprintf(stderr, "stream interrupted (%v); resuming after event %s in %s\n", err, orDash(last), wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printResult prints the last turn's final answer, for an agent CLI.
func (c *apiClient) printResult(ctx context.Context, id string, stdout io.Writer) {
	var turns struct {
		Data []struct {
			Result *string `json:"result"`
		} `json:"data"`
	}
	if c.call(ctx, "GET", "/sessions/"+id+"/turns", nil, &turns) == nil && len(turns.Data) > 0 {
		if r := turns.Data[len(turns.Data)-1].Result; r != nil {
			fmt.Fprintln(stdout, strings.TrimRight(*r, "\n"))
		}
	}
}

// readEvents reads one connection's events: stages to stderr, output to
// stdout (when shown); it returns the terminal event as an exitError (code
// 0 and no message for a clean exit), or nil with the last event id when
// the connection ended first.
func readEvents(body io.Reader, last string, showOutput bool, stdout, stderr io.Writer) (*exitError, string, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	id := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			var ev struct {
				Type       string `json:"type"`
				Stage      string `json:"stage"`
				State      string `json:"state"`
				DurationMS *int64 `json:"duration_ms"`
				Message    string `json:"message"`
				Stream     string `json:"stream"`
				Data       string `json:"data"`
				Code       *int   `json:"code"`
				ID         *int64 `json:"id"`
			}
			if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev) != nil {
				continue
			}
			switch ev.Type {
			case "stage":
				msg := fmt.Sprintf("%s: %s", ev.Stage, ev.State)
				if ev.DurationMS != nil {
					msg += fmt.Sprintf(" (%d ms)", *ev.DurationMS)
				}
				if ev.Message != "" {
					msg += " — " + ev.Message
				}
				fmt.Fprintln(stderr, msg)
			case "output":
				if showOutput {
					if ev.Stream == "stderr" {
						io.WriteString(stderr, ev.Data)
					} else {
						io.WriteString(stdout, ev.Data)
					}
				}
			case "exit":
				if ev.Code == nil || *ev.Code == 0 {
					return &exitError{}, id, nil
				}
				return &exitError{Code: *ev.Code, Msg: "the turn exited with code " + strconv.Itoa(*ev.Code)}, id, nil
			case "error", "terminated":
				return &exitError{Code: 1, Msg: ev.Message}, id, nil
			case "stale":
				return &exitError{Code: 1, Msg: ev.Message + " (the session may still be running)"}, id, nil
			}
		case line == "":
			if id != "" {
				last = id
			}
		}
	}
	return nil, last, sc.Err()
}

// sessionsCmd is the client's view of sessions.
func sessionsCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "sessions", Short: "Work with an aod server's sessions (over HTTP)"}
	client := clientFlags(cmd, getenv)
	show := func(method, path string, body any) error {
		c, err := client()
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := c.call(context.Background(), method, path, body, &out); err != nil {
			return err
		}
		var pretty bytes.Buffer
		json.Indent(&pretty, out, "", "  ")
		fmt.Fprintln(stdout, pretty.String())
		return nil
	}
	id1 := cobra.ExactArgs(1)
	cmd.AddCommand(
		&cobra.Command{Use: "list", Short: "List your sessions", Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error { return show("GET", "/sessions", nil) }},
		&cobra.Command{Use: "get ID", Short: "Show a session", Args: id1,
			RunE: func(_ *cobra.Command, a []string) error { return show("GET", "/sessions/"+a[0], nil) }},
		&cobra.Command{Use: "interrupt ID", Short: "Stop a session's turn and keep the session", Args: id1,
			RunE: func(_ *cobra.Command, a []string) error { return show("POST", "/sessions/"+a[0]+"/interrupt", nil) }},
		&cobra.Command{Use: "terminate ID", Short: "Terminate a session", Args: id1,
			RunE: func(_ *cobra.Command, a []string) error { return show("POST", "/sessions/"+a[0]+"/terminate", nil) }},
		&cobra.Command{Use: "delete ID", Short: "Delete a finished session", Args: id1,
			RunE: func(_ *cobra.Command, a []string) error { return show("DELETE", "/sessions/"+a[0]+"/delete", nil) }},
		&cobra.Command{Use: "files ID [PATH]", Short: "List a session's files (default: its home directory)", Args: cobra.RangeArgs(1, 2),
			RunE: func(_ *cobra.Command, a []string) error {
				p := ""
				if len(a) > 1 {
					p = "?path=" + a[1]
				}
				return show("GET", "/sessions/"+a[0]+"/files"+p, nil)
			}},
		&cobra.Command{Use: "logs ID", Short: "Print a session's events to its end (resuming after a disconnect)", Args: id1,
			RunE: func(cmd *cobra.Command, a []string) error {
				c, err := client()
				if err != nil {
					return err
				}
				return c.follow(cmd.Context(), a[0], true, stdout, stderr)
			}},
	)
	prompt := &cobra.Command{Use: `prompt ID "prompt"`, Short: "Send a follow-up and stream it", Args: cobra.ExactArgs(2)}
	var raw bool
	prompt.Flags().BoolVar(&raw, "raw", false, "print the CLI's output as it wrote it")
	prompt.RunE = func(cmd *cobra.Command, a []string) error {
		c, err := client()
		if err != nil {
			return err
		}
		if err := c.call(cmd.Context(), "POST", "/sessions/"+a[0]+"/prompt", map[string]any{"prompt": a[1]}, nil); err != nil {
			return err
		}
		return c.follow(cmd.Context(), a[0], raw, stdout, stderr)
	}
	cmd.AddCommand(prompt)
	return cmd
}

// agentsCmd is the client's view of agents.
func agentsCmd(getenv func(string) string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "agents", Short: "Work with an aod server's agents (over HTTP)"}
	client := clientFlags(cmd, getenv)
	show := func(ctx context.Context, method, path string, body any) error {
		c, err := client()
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := c.call(ctx, method, path, body, &out); err != nil {
			return err
		}
		var pretty bytes.Buffer
		json.Indent(&pretty, out, "", "  ")
		fmt.Fprintln(stdout, pretty.String())
		return nil
	}
	get := &cobra.Command{Use: "get NAME|ID", Short: "Show an agent", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			id, err := c.agentID(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			return show(cmd.Context(), "GET", "/agents/"+id, nil)
		}}
	var runtime, model, system, environment string
	create := &cobra.Command{Use: "create NAME --runtime R [--model M] [--system TEXT] [--environment ID]", Short: "Create an agent",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			body := map[string]any{"name": a[0], "runtime": runtime}
			if model != "" {
				body["model"] = model
			}
			if system != "" {
				body["system"] = system
			}
			if environment != "" {
				body["environment_id"] = environment
			}
			return show(cmd.Context(), "POST", "/agents", body)
		}}
	create.Flags().StringVar(&runtime, "runtime", "", "claude, codex, opencode, gemini or shell")
	create.Flags().StringVar(&model, "model", "", "provider/model, e.g. anthropic/claude-sonnet-4-6")
	create.Flags().StringVar(&system, "system", "", "the system prompt")
	create.Flags().StringVar(&environment, "environment", "", "a default environment id")
	cmd.AddCommand(
		&cobra.Command{Use: "list", Short: "List your agents", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return show(cmd.Context(), "GET", "/agents", nil) }},
		get, create)
	return cmd
}
