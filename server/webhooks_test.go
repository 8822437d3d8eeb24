package server_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/matryer/is"
)

// received is one delivery a test endpoint got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a webhook endpoint on 127.0.0.1 that answers fail first.
func receiver(t *testing.T, fails int32) (*httptest.Server, func() []received) {
	var mu sync.Mutex
	var got []received
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if n.Add(1) <= fails {
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		got = append(got, received{r.Header.Clone(), b})
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return srv, func() []received { mu.Lock(); defer mu.Unlock(); return append([]received(nil), got...) }
}

// verify is an independent Standard Webhooks check: the signature is
// "v1," and base64(HMAC-SHA256(secret bytes, "id.timestamp.body")).
func verify(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// Webhooks: created with a secret shown once; a session's running and
// completed events are delivered, signed, with type and ids only; a
// failing endpoint is retried; deliveries are listed and redelivered;
// targets on loopback, link-local or private addresses are refused unless
// --egress-allow names them.
func TestWebhooks(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, apitest.Options{Runner: apitest.RealRunner, EgressAllow: []string{"127.0.0.1"}})
	tok := a.Token("alice")
	hook, got := receiver(t, 1) // the first attempt fails
	r := a.Do("POST", "/webhooks", tok, map[string]any{"url": hook.URL + "/aod", "events": []string{"session.running", "session.completed"}, "description": "ci"})
	is.Equal(r.Status, http.StatusCreated) // created
	w := r.Obj()
	secret, _ := w["secret"].(string)
	is.True(strings.HasPrefix(secret, "whsec_")) // with its secret, this once
	is.Equal(w["type"], "webhook")
	id := w["id"].(string)
	g := a.Do("GET", "/webhooks/"+id, tok, nil).Obj()
	is.Equal(g["secret"], nil)                                                              // never again
	is.Equal(a.Do("GET", "/webhooks/"+id, a.Token("bob"), nil).Status, http.StatusNotFound) // not someone else's

	sess := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "echo hi"))
	a.WaitStatus(tok, sess, "completed")
	ok := testkit.Eventually(30*time.Second, func() bool { return len(got()) >= 2 })
	is.True(ok) // both events arrive (the first after a retry)
	types := map[string]bool{}
	for _, d := range got() {
		is.True(verify(secret, d.header, d.body)) // signed as Standard Webhooks say
		ts, err := strconv.ParseInt(d.header.Get("webhook-timestamp"), 10, 64)
		is.NoErr(err)
		is.True(time.Since(time.Unix(ts, 0)) < time.Minute) // with a fresh timestamp
		var body map[string]any
		is.NoErr(json.Unmarshal(d.body, &body))
		is.Equal(body["id"], d.header.Get("webhook-id")) // the delivery id
		data := body["data"].(map[string]any)
		is.Equal(data["session_id"], sess) // ids only: the client fetches the session
		is.Equal(data["turn_number"], float64(1))
		types[body["type"].(string)] = true
		is.True(body["created_at"] != nil) // and when
	}
	is.True(types["session.running"] && types["session.completed"]) // the events asked for

	var dl []any
	settled := testkit.Eventually(10*time.Second, func() bool { // the attempt is recorded just after the answer
		dl = a.Do("GET", "/webhooks/"+id+"/deliveries", tok, nil).Data()
		for _, d := range dl {
			if d.(map[string]any)["status"] != "succeeded" {
				return false
			}
		}
		return len(dl) == 2
	})
	is.True(settled)     // both recorded as delivered
	is.Equal(len(dl), 2) // both listed
	retried := false
	for _, d := range dl {
		m := d.(map[string]any)
		is.Equal(m["status"], "succeeded")
		retried = retried || m["attempts"].(float64) == 2
	}
	is.True(retried) // one needed a second attempt
	first := dl[0].(map[string]any)["id"].(string)
	is.Equal(a.Do("POST", "/webhooks/"+id+"/deliveries/"+first+"/redeliver", tok, nil).Status, http.StatusAccepted)
	is.True(testkit.Eventually(10*time.Second, func() bool { return len(got()) >= 3 })) // redelivered

	for _, bad := range []string{"http://169.254.169.254/latest", "http://10.1.2.3/x", "ftp://example.com/", "http://user:pw@example.com/"} {
		r = a.Do("POST", "/webhooks", tok, map[string]any{"url": bad})
		is.Equal(r.Status, http.StatusUnprocessableEntity) // refused (see bad)
	}
	strict := apitest.New(t, apitest.Options{})
	st := strict.Token("carol")
	r = strict.Do("POST", "/webhooks", st, map[string]any{"url": hook.URL})
	is.Equal(r.Status, http.StatusUnprocessableEntity) // loopback, without --egress-allow
	r = strict.Do("POST", "/webhooks", st, map[string]any{"url": "http://localhost:1/x"})
	is.Equal(r.Status, http.StatusCreated) // a name is checked where it resolves: at delivery

	is.Equal(a.Do("DELETE", "/webhooks/"+id+"/delete", tok, nil).Obj()["detail"], "Webhook deleted")
	is.Equal(a.Do("GET", "/webhooks/"+id, tok, nil).Status, http.StatusNotFound) // gone
}
