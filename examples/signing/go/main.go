// Signs JWTs with the key jwks-operator keeps for a policy: the files
// active.pem and active.kid of its Secret, mounted as a volume (or of a
// standalone state directory, which holds the same files). The files are
// re-read every RELOAD_INTERVAL; a new key is used as soon as it appears.
// Only Go's standard library is used.
//
// Run:   KEY_DIR=/var/run/jwks ALG=ES256 ISSUER=https://my-app.example.com \
//          AUDIENCE=my-app go run .
// Each line read on standard input is a subject; a token for it is written
// to standard output.
package main

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

var b64 = base64.RawURLEncoding

// Signer holds the active key and swaps it when the files change.
type Signer struct {
	dir string
	alg string

	mu  sync.RWMutex
	key crypto.Signer
	kid string
}

// NewSigner loads the key in dir; it fails when there is none yet.
func NewSigner(dir, alg string) (*Signer, error) {
	s := &Signer{dir: dir, alg: alg}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads active.kid and active.pem and switches to them when they
// hold a new key. The pair is taken only when the kid is the key's RFC 7638
// thumbprint (which jwks-operator's kids are), so a read in the middle of an
// update keeps the previous key instead of signing under a wrong kid.
func (s *Signer) Reload() (changed bool, err error) {
	kidBytes, err := os.ReadFile(filepath.Join(s.dir, "active.kid"))
	if err != nil {
		return false, err
	}
	pemBytes, err := os.ReadFile(filepath.Join(s.dir, "active.pem"))
	if err != nil {
		return false, err
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return false, errors.New("active.pem holds no PEM block")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return false, fmt.Errorf("active.pem: %w", err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return false, errors.New("active.pem: not a signing key")
	}
	kid := strings.TrimSpace(string(kidBytes))
	if tp, err := thumbprint(key.Public()); err != nil || tp != kid {
		return false, fmt.Errorf("active.kid (%s) and active.pem (%s) differ: read during an update", kid, tp)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed = kid != s.kid
	s.key, s.kid = key, kid
	return changed, nil
}

// Watch calls Reload every interval, for ever.
func (s *Signer) Watch(every time.Duration) {
	for range time.Tick(every) {
		changed, err := s.Reload()
		switch {
		case err != nil:
			log.Printf("keeping key %s: %v", s.Kid(), err)
		case changed:
			log.Printf("signing with key %s", s.Kid())
		}
	}
}

// Kid is the kid of the key that signs now.
func (s *Signer) Kid() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.kid
}

// Sign returns a compact JWS of claims with alg, kid and typ in the header.
func (s *Signer) Sign(claims map[string]any) (string, error) {
	s.mu.RLock()
	key, kid := s.key, s.kid
	s.mu.RUnlock()
	header, err := json.Marshal(map[string]string{"alg": s.alg, "kid": kid, "typ": "JWT"})
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(body)
	sig, err := signature(s.alg, key, []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(sig), nil
}

func signature(alg string, key crypto.Signer, data []byte) ([]byte, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		var digest []byte
		switch alg {
		case "ES256":
			d := sha256.Sum256(data)
			digest = d[:]
		case "ES384":
			d := sha512.Sum384(data)
			digest = d[:]
		default:
			return nil, fmt.Errorf("an EC key cannot sign %s", alg)
		}
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return nil, err
		}
		// JWS wants r and s as fixed-size big-endian integers, not ASN.1.
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	case *rsa.PrivateKey:
		if alg != "RS256" {
			return nil, fmt.Errorf("this example signs RSA keys with RS256 only, not %s", alg)
		}
		d := sha256.Sum256(data)
		return rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
	case ed25519.PrivateKey:
		if alg != "EdDSA" {
			return nil, fmt.Errorf("an Ed25519 key cannot sign %s", alg)
		}
		return ed25519.Sign(k, data), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of pub.
func thumbprint(pub crypto.PublicKey) (string, error) {
	var canonical string
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		x, y := make([]byte, size), make([]byte, size)
		k.X.FillBytes(x)
		k.Y.FillBytes(y)
		canonical = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`,
			k.Curve.Params().Name, b64.EncodeToString(x), b64.EncodeToString(y))
	case *rsa.PublicKey:
		e := big.NewInt(int64(k.E)).Bytes()
		canonical = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`,
			b64.EncodeToString(e), b64.EncodeToString(k.N.Bytes()))
	case ed25519.PublicKey:
		canonical = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, b64.EncodeToString(k))
	default:
		return "", fmt.Errorf("unsupported key type %T", pub)
	}
	sum := sha256.Sum256([]byte(canonical))
	return b64.EncodeToString(sum[:]), nil
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("go-signer: ")
	every, err := time.ParseDuration(env("RELOAD_INTERVAL", "10s"))
	if err != nil {
		log.Fatalf("RELOAD_INTERVAL: %v", err)
	}
	ttl, err := strconv.Atoi(env("TTL_SECONDS", "600"))
	if err != nil {
		log.Fatalf("TTL_SECONDS: %v", err)
	}
	signer, err := NewSigner(env("KEY_DIR", "/var/run/jwks"), env("ALG", "ES256"))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("signing with key %s", signer.Kid())
	go signer.Watch(every)

	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		now := time.Now().Unix()
		token, err := signer.Sign(map[string]any{
			"iss": os.Getenv("ISSUER"),
			"aud": os.Getenv("AUDIENCE"),
			"sub": strings.TrimSpace(lines.Text()),
			"iat": now,
			"nbf": now,
			"exp": now + int64(ttl),
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(token)
	}
}
