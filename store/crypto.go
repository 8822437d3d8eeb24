package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// cipherBox seals secrets with AES-256-GCM. Each ciphertext is bound to the
// row it belongs to through the additional data, so a ciphertext copied into
// another row does not decrypt.
type cipherBox struct {
	key  []byte
	aead cipher.AEAD
}

const sealVersion = 1

func newCipherBox(key []byte) (*cipherBox, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("encryption key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &cipherBox{key: key, aead: aead}, nil
}

// loadKey uses the configured key, else reads dir/aod.key, else creates it
// with 0600 permissions. The file appears complete or not at all, so two
// processes starting at once agree on one key.
func loadKey(dir, configured string) (*cipherBox, error) {
	if configured != "" {
		key, err := decodeKey(configured)
		if err != nil {
			return nil, fmt.Errorf("AOD_ENCRYPTION_KEY: %w", err)
		}
		return newCipherBox(key)
	}
	path := filepath.Join(dir, KeyFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		box, _ := newCipherBox(key)
		if err := createFileAtomically(path, box.encodedKey()); errors.Is(err, os.ErrExist) {
			return loadKey(dir, configured) // another process made it first: use theirs
		} else if err != nil {
			return nil, fmt.Errorf("create key file: %w", err)
		}
		return box, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	key, err := decodeKey(string(raw))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return newCipherBox(key)
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("want 32 bytes, hex or base64 encoded")
}

func (c *cipherBox) encodedKey() []byte { return []byte(hex.EncodeToString(c.key) + "\n") }

func (c *cipherBox) seal(plain []byte, bind string) ([]byte, error) {
	nonce := make([]byte, c.aead.NonceSize(), 1+c.aead.NonceSize()+len(plain)+c.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte{sealVersion}, nonce...)
	return c.aead.Seal(out, nonce, plain, []byte(bind)), nil
}

func (c *cipherBox) open(sealed []byte, bind string) ([]byte, error) {
	ns := c.aead.NonceSize()
	if len(sealed) < 1+ns || sealed[0] != sealVersion {
		return nil, errors.New("malformed ciphertext")
	}
	return c.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(bind))
}

// CheckCrypto round-trips a value through the cipher (for /health).
func (db *DB) CheckCrypto() error {
	sealed, err := db.crypt.seal([]byte("ping"), "health")
	if err != nil {
		return err
	}
	plain, err := db.crypt.open(sealed, "health")
	if err != nil {
		return err
	}
	if string(plain) != "ping" {
		return errors.New("round-trip mismatch")
	}
	return nil
}

// createFileAtomically writes data to a temporary file and hard-links it to
// path, which fails with os.ErrExist if path already exists: readers never
// see a partly written file and an existing file is never replaced.
func createFileAtomically(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}
