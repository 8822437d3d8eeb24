// Command aod runs AI coding agents on demand behind an HTTP API.
// main.go only wires commands to the store and the server.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aod/aod/server"
	"github.com/aod/aod/store"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "aod:", err)
		os.Exit(1)
	}
}

// Defaults that work with zero configuration.
const (
	defaultDataDir = "./aod-data"
	defaultListen  = "127.0.0.1:8777"
)

// run is the whole program, callable from tests end to end.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var dataDir string
	root := &cobra.Command{
		Use:           "aod",
		Short:         "Agents on demand: run AI coding agents behind an HTTP API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&dataDir, "data-dir", envOr(getenv, "AOD_DATA_DIR", defaultDataDir),
		"directory holding the database, the encryption key and the sprites (env AOD_DATA_DIR)")
	openStore := func(ctx context.Context) (*store.DB, error) {
		return store.Open(ctx, dataDir, store.Options{EncryptionKey: getenv("AOD_ENCRYPTION_KEY")})
	}

	root.AddCommand(serveCmd(getenv, openStore, &dataDir, stdout, stderr))
	root.AddCommand(tokenCmd(openStore, stdout))
	root.AddCommand(&cobra.Command{
		Use:   "backup DEST_DIR",
		Short: "Write a consistent copy of the database and the key file (safe while the server runs)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			if err := db.Backup(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "backup written to %s (%s and %s; keep the key file: without it every secret is lost)\n",
				args[0], store.DBFile, store.KeyFile)
			return nil
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintln(stdout, "aod", versionString())
		},
	})
	return root.ExecuteContext(ctx)
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func versionString() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

func serveCmd(getenv func(string) string, openStore func(context.Context) (*store.DB, error), dataDir *string, stdout, stderr io.Writer) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			logger := slog.New(slog.NewTextHandler(stderr, nil))
			db, err := openStore(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &http.Server{
				Handler:           server.New(db, server.Config{Version: versionString(), Logger: logger}),
				ReadHeaderTimeout: 10 * time.Second,
				IdleTimeout:       2 * time.Minute,
			}
			fmt.Fprintf(stdout, "aod %s listening on http://%s (data dir %s)\n", versionString(), ln.Addr(), *dataDir)
			fmt.Fprintf(stdout, "create an API token with: aod --data-dir %s token create --user NAME\n", *dataDir)
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			logger.Info("shutting down")
			shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", envOr(getenv, "AOD_LISTEN", defaultListen), "address to listen on (env AOD_LISTEN)")
	return cmd
}

func tokenCmd(openStore func(context.Context) (*store.DB, error), stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens"}

	var user, name string
	var expiresIn time.Duration
	create := &cobra.Command{
		Use:   "create --user NAME [--name LABEL] [--expires-in DURATION]",
		Short: "Create an API token (and the user, if new); the token is the last line printed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			u, err := db.EnsureUser(cmd.Context(), user)
			if err != nil {
				return err
			}
			var exp *time.Time
			if expiresIn > 0 {
				t := time.Now().Add(expiresIn)
				exp = &t
			}
			k, raw, err := db.CreateAPIKey(cmd.Context(), u.ID, name, exp)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "created token %s… for user %s (shown once; store it now)\n", k.Prefix, u.Username)
			fmt.Fprintln(stdout, raw)
			return nil
		},
	}
	create.Flags().StringVar(&user, "user", "", "username (created if it does not exist)")
	create.Flags().StringVar(&name, "name", "", "label for the token")
	create.Flags().DurationVar(&expiresIn, "expires-in", 0, "token lifetime, e.g. 720h (default: never expires)")
	create.MarkFlagRequired("user")

	var listUser string
	list := &cobra.Command{
		Use:   "list --user NAME",
		Short: "List a user's tokens by prefix",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			u, err := db.UserByName(cmd.Context(), listUser)
			if err != nil {
				return err
			}
			keys, err := db.ListAPIKeys(cmd.Context(), u.ID)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PREFIX\tNAME\tSTATUS\tCREATED\tEXPIRES")
			for _, k := range keys {
				status, expires := "active", "never"
				if !k.Active {
					status = "revoked"
				}
				if k.ExpiresAt != nil {
					expires = store.FormatTime(*k.ExpiresAt)
					if k.Active && !time.Now().Before(*k.ExpiresAt) {
						status = "expired"
					}
				}
				fmt.Fprintf(tw, "%s…\t%s\t%s\t%s\t%s\n", k.Prefix, k.Name, status, store.FormatTime(k.CreatedAt), expires)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&listUser, "user", "", "username")
	list.MarkFlagRequired("user")

	revoke := &cobra.Command{
		Use:   "revoke PREFIX",
		Short: "Revoke the token whose prefix (as `token list` shows it) starts with PREFIX",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			k, err := db.RevokeAPIKeyByPrefix(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked %s…\n", k.Prefix)
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
