package main

import (
	"fmt"
	"log/slog"

	"github.com/aod/aod/runner"
	"github.com/aod/aod/runner/remote"
	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/runner/sprites"
	"github.com/spf13/pflag"
)

// spritesOptions are serve's settings of the Sprites backend
// (--sandbox sprites).
type spritesOptions struct {
	token, url, prefix string
}

// defaultSpritesURL is the Sprites service's public API.
const defaultSpritesURL = "https://api.sprites.dev"

func spritesFlags(f *pflag.FlagSet, env envReader, o *spritesOptions) {
	f.StringVar(&o.token, "sprites-token", env.str("AOD_SPRITES_TOKEN", ""), "with --sandbox sprites: the Sprites API token; prefer the variable, flags show in ps (env AOD_SPRITES_TOKEN)")
	f.StringVar(&o.url, "sprites-url", env.str("AOD_SPRITES_URL", defaultSpritesURL), "with --sandbox sprites: the Sprites API's base URL (env AOD_SPRITES_URL)")
	f.StringVar(&o.prefix, "sprites-prefix", env.str("AOD_SPRITES_PREFIX", "aod-"), "with --sandbox sprites: start of every Sprite's name (<prefix><session id>); the sweep removes only Sprites named so (env AOD_SPRITES_PREFIX)")
}

// spritesBackend is the remote backend --sandbox sprites asks for, nil for
// the local sandboxes.
func spritesBackend(sandbox string, o spritesOptions, log *slog.Logger) (sprite.Backend, error) {
	if sandbox != runner.SandboxSprites {
		return nil, nil
	}
	if o.token == "" {
		return nil, fmt.Errorf("--sandbox sprites needs a Sprites API token: set AOD_SPRITES_TOKEN (or --sprites-token)")
	}
	if o.prefix == "" {
		return nil, fmt.Errorf("--sprites-prefix must not be empty: the sweep would take every Sprite of the organisation for its own")
	}
	c := sprites.New(sprites.Config{URL: o.url, Token: o.token, Log: log})
	return remote.New(remote.Config{Client: c, Prefix: o.prefix, Log: log}), nil
}
