package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

func TestAPIKeys(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	u, err := db.EnsureUser(ctx, "alice")
	is.NoErr(err) // user
	_, err = db.EnsureUser(ctx, "bad name!")
	is.Equal(ErrorCode(err), Invalid) // usernames are checked

	k, raw, err := db.CreateAPIKey(ctx, u.ID, "ci", nil)
	is.NoErr(err)                           // create key
	is.True(strings.HasPrefix(raw, "aod_")) // token prefix
	is.Equal(len(raw), 47)                  // aod_ + 43 url-safe chars
	is.Equal(k.Prefix, raw[:12])            // display prefix
	var stored int
	is.NoErr(db.reader.QueryRowContext(ctx, `SELECT count(*) FROM api_keys WHERE key_hash = ? AND key_prefix = ?`, HashToken(raw), raw[:12]).Scan(&stored))
	is.Equal(stored, 1) // stored as its hash
	var plain int
	is.NoErr(db.reader.QueryRowContext(ctx, `SELECT count(*) FROM api_keys WHERE key_hash = ? OR key_prefix = ?`, raw, raw).Scan(&plain))
	is.Equal(plain, 0) // never as the raw token

	got, err := db.Authenticate(ctx, raw)
	is.NoErr(err)          // valid token
	is.Equal(got.ID, u.ID) // resolves to its user
	_, err = db.Authenticate(ctx, raw+"x")
	is.Equal(ErrorMessage(err), "Invalid API key") // unknown token

	past := time.Now().Add(-time.Minute)
	_, expired, _ := db.CreateAPIKey(ctx, u.ID, "old", &past)
	_, err = db.Authenticate(ctx, expired)
	is.Equal(ErrorMessage(err), "API key has expired") // expired

	_, raw2, _ := db.CreateAPIKey(ctx, u.ID, "two", nil)
	_, err = db.RevokeAPIKeyByPrefix(ctx, "aod_")
	is.Equal(ErrorCode(err), Conflict) // an ambiguous prefix revokes nothing
	_, err = db.RevokeAPIKeyByPrefix(ctx, raw[:12])
	is.NoErr(err) // revoke by prefix
	_, err = db.Authenticate(ctx, raw)
	is.Equal(ErrorMessage(err), "API key is inactive") // revoked
	_, err = db.Authenticate(ctx, raw2)
	is.NoErr(err) // the other key still works

	keys, err := db.ListAPIKeys(ctx, u.ID)
	is.NoErr(err)                                                                                         // list
	is.Equal(len(keys), 3)                                                                                // all keys, revoked included
	is.Equal(keys[0].Name, "two")                                                                         // newest first
	is.True(slices.ContainsFunc(keys, func(k *APIKey) bool { return !k.Active && k.Prefix == raw[:12] })) // revoked shown inactive
}
