package sprites

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sprite is what the API says about one sprite.
type Sprite struct {
	ID     string
	Name   string
	Status string // "cold", "warm" or "running"
	// URL is the sprite's public address, when the API gives one.
	URL       string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// spriteJSON is the wire form of a sprite; fields not used are skipped.
type spriteJSON struct {
	ID        flexString `json:"id"`
	Name      string     `json:"name"`
	Status    string     `json:"status"`
	URL       string     `json:"url"`
	CreatedAt flexTime   `json:"created_at"`
	UpdatedAt flexTime   `json:"updated_at"`
}

func (s spriteJSON) sprite() Sprite {
	return Sprite{ID: string(s.ID), Name: s.Name, Status: s.Status, URL: s.URL,
		CreatedAt: time.Time(s.CreatedAt), UpdatedAt: time.Time(s.UpdatedAt)}
}

// Create makes sprite name. A 429 (no capacity) is returned at once: the
// caller decides whether to wait (see Capacity). A 5xx or a dropped
// connection is retried with backoff; since the first try may have
// created the sprite, each retry first looks it up and returns it when it
// exists. A 409 on the first try is returned (see IsExists).
func (c *Client) Create(ctx context.Context, name string) (*Sprite, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	r := &request{method: http.MethodPost, path: "/v1/sprites",
		body: jsonBody(map[string]any{"name": name}), ctype: "application/json",
		timeout: c.cfg.CreateTimeout}
	for n := 1; ; n++ {
		if n > 1 {
			s, err := c.Get(ctx, name)
			if err == nil {
				return s, nil
			}
			if !IsNotFound(err) {
				return nil, fmt.Errorf("sprites: create %s: looking for it after a failed try: %w", name, err)
			}
		}
		var out spriteJSON
		err := c.doJSON(ctx, r, &out)
		if err == nil {
			s := out.sprite()
			if s.Name == "" {
				s.Name = name
			}
			return &s, nil
		}
		if n > 1 && IsExists(err) {
			// An earlier try created it after all.
			return c.Get(ctx, name)
		}
		if _, capErr := Capacity(err); capErr {
			return nil, err
		}
		delay, ok := c.retryable(ctx, retrySafe, n, err)
		if !ok {
			return nil, err
		}
		c.log.Debug("sprites: retrying", "op", r.op(), "attempt", n, "delay", delay, "err", err)
		if err := sleep(ctx, delay); err != nil {
			return nil, err
		}
	}
}

// Get returns sprite name; a missing one is an error satisfying IsNotFound.
func (c *Client) Get(ctx context.Context, name string) (*Sprite, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var out spriteJSON
	err := c.doJSON(ctx, &request{method: http.MethodGet, path: spritePath(name, ""), retry: retrySafe}, &out)
	if err != nil {
		return nil, err
	}
	s := out.sprite()
	return &s, nil
}

// Delete removes sprite name and everything in it. A missing sprite is
// success.
func (c *Client) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := c.doJSON(ctx, &request{method: http.MethodDelete, path: spritePath(name, ""), retry: retrySafe}, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// maxListPages bounds List against a server whose continuation never ends.
const maxListPages = 1000

// List returns every sprite whose name starts with prefix ("" for all),
// following continuation tokens.
func (c *Client) List(ctx context.Context, prefix string) ([]Sprite, error) {
	var all []Sprite
	token := ""
	seen := map[string]bool{}
	for page := 0; ; page++ {
		if page >= maxListPages {
			return nil, fmt.Errorf("sprites: list: more than %d pages", maxListPages)
		}
		q := url.Values{"max_results": {strconv.Itoa(c.cfg.ListPageSize)}}
		if prefix != "" {
			q.Set("prefix", prefix)
		}
		if token != "" {
			q.Set("continuation_token", token)
		}
		var out struct {
			Sprites   []spriteJSON `json:"sprites"`
			HasMore   bool         `json:"has_more"`
			NextToken string       `json:"next_continuation_token"`
		}
		if err := c.doJSON(ctx, &request{method: http.MethodGet, path: "/v1/sprites", query: q, retry: retrySafe}, &out); err != nil {
			return nil, err
		}
		for _, s := range out.Sprites {
			// Filter too, in case a server ignores prefix.
			if strings.HasPrefix(s.Name, prefix) {
				all = append(all, s.sprite())
			}
		}
		if !out.HasMore || out.NextToken == "" {
			return all, nil
		}
		if seen[out.NextToken] {
			return nil, fmt.Errorf("sprites: list: continuation token %q repeated", out.NextToken)
		}
		seen[out.NextToken] = true
		token = out.NextToken
	}
}

// PolicyRule is one rule of a network policy: a domain allowed or denied,
// or Include "defaults" for the API's default set.
type PolicyRule struct {
	Domain  string
	Action  string // "allow" or "deny"
	Include string
}

// MarshalJSON writes {"include": …} or {"domain": …, "action": …}.
func (r PolicyRule) MarshalJSON() ([]byte, error) {
	if r.Include != "" {
		return json.Marshal(struct {
			Include string `json:"include"`
		}{r.Include})
	}
	return json.Marshal(struct {
		Domain string `json:"domain"`
		Action string `json:"action"`
	}{r.Domain, r.Action})
}

// UnmarshalJSON reads either form.
func (r *PolicyRule) UnmarshalJSON(b []byte) error {
	var v struct {
		Domain  string `json:"domain"`
		Action  string `json:"action"`
		Include string `json:"include"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = PolicyRule(v)
	return nil
}

// SetNetworkPolicy replaces sprite name's outbound network rules.
func (c *Client) SetNetworkPolicy(ctx context.Context, name string, rules []PolicyRule) error {
	if err := checkName(name); err != nil {
		return err
	}
	for _, r := range rules {
		if r.Include == "" && (r.Domain == "" || (r.Action != "allow" && r.Action != "deny")) {
			return fmt.Errorf("sprites: bad policy rule %+v", r)
		}
	}
	if rules == nil {
		rules = []PolicyRule{}
	}
	body := jsonBody(map[string]any{"rules": rules})
	return c.doJSON(ctx, &request{method: http.MethodPost, path: spritePath(name, "/policy/network"),
		body: body, ctype: "application/json", retry: retrySafe}, nil)
}

// NetworkPolicy returns sprite name's outbound network rules.
func (c *Client) NetworkPolicy(ctx context.Context, name string) ([]PolicyRule, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var out struct {
		Rules []PolicyRule `json:"rules"`
	}
	err := c.doJSON(ctx, &request{method: http.MethodGet, path: spritePath(name, "/policy/network"), retry: retrySafe}, &out)
	return out.Rules, err
}

func checkName(name string) error {
	if name == "" {
		return errors.New("sprites: empty sprite name")
	}
	return nil
}

// flexTime reads an RFC 3339 string or a Unix time in seconds or
// milliseconds; anything else is the zero time rather than an error, so a
// field aod barely uses cannot fail a call.
type flexTime time.Time

func (t *flexTime) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		var s string
		if json.Unmarshal(b, &s) != nil {
			return nil
		}
		if v, err := time.Parse(time.RFC3339Nano, s); err == nil {
			*t = flexTime(v)
		}
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) {
		return nil
	}
	if f > 1e12 {
		f /= 1000
	}
	sec, frac := math.Modf(f)
	*t = flexTime(time.Unix(int64(sec), int64(frac*1e9)).UTC())
	return nil
}

// flexString reads a string or a number as a string.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	*s = flexString(b)
	return nil
}

// flexInt reads a number or a numeric string.
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	b = bytes.Trim(b, `"`)
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %s", b)
	}
	*n = flexInt(v)
	return nil
}
