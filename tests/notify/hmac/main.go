// Command hmac-receiver accepts modelsync's `generic` notifications only when their
// X-Signature header is `sha256=` and the hex HMAC-SHA256 of the body under the key in
// -key-file, compared in constant time. Accepted documents are served as a JSON list at
// GET /received; refused requests get 401 and are counted at GET /refused.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
)

type store struct {
	mu       sync.Mutex
	received []map[string]any
	refused  []string
}

func verify(key, body []byte, header string) error {
	sig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return fmt.Errorf("X-Signature %q does not start with sha256=", header)
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("X-Signature is not hex: %v", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("X-Signature does not match the body")
	}
	return nil
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	keyFile := flag.String("key-file", "", "file holding the HMAC key")
	flag.Parse()
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		log.Fatalf("reading -key-file: %v", err)
	}
	s := &store{received: []map[string]any{}, refused: []string{}}
	http.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err == nil {
			err = verify(key, body, r.Header.Get("X-Signature"))
		}
		var doc map[string]any
		if err == nil {
			err = json.Unmarshal(body, &doc)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.refused = append(s.refused, err.Error())
			answer(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
			return
		}
		doc["eventIdHeader"] = r.Header.Get("X-ModelSync-Event-Id")
		s.received = append(s.received, doc)
		line, _ := json.Marshal(doc)
		fmt.Println(string(line))
		answer(w, http.StatusOK, map[string]bool{"ok": true})
	})
	http.HandleFunc("GET /received", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		answer(w, http.StatusOK, s.received)
	})
	http.HandleFunc("GET /refused", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		answer(w, http.StatusOK, s.refused)
	})
	log.Printf("generic receiver checking HMAC signatures on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, nil))
}
