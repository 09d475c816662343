// A needs-sync lambda in Go, standard library only: retrain when the newest model is stale.
//
// Model records are JSON files in a folder (for example the models/ folder of a git-sync or
// `modelsync mirror` checkout), each {"id": ..., "created": "<RFC 3339>", ...}.
//
// With --token-file, callers must send "Authorization: Bearer <token>", as the controller does
// with the token key of the Secret a ModelSync names in spec.lambdaSecretRef.
package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type record struct {
	ID      string `json:"id"`
	Created string `json:"created"`
}

type model struct {
	id      string
	created time.Time
}

// newestModel returns the record with the greatest created time, or nil when there is none.
func newestModel(dir string) (*model, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var newest *model
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		var r record
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%s: not JSON: %w", name, err)
		}
		created, err := time.Parse(time.RFC3339, r.Created)
		if err != nil || r.ID == "" {
			return nil, fmt.Errorf("%s: not a model record with id and created (RFC 3339)", name)
		}
		if newest == nil || created.After(newest.created) || (created.Equal(newest.created) && r.ID > newest.id) {
			newest = &model{id: r.ID, created: created}
		}
	}
	return newest, nil
}

// decide returns the HTTP status and the answer object.
func decide(dir string, maxAge time.Duration, now time.Time) (int, map[string]any) {
	newest, err := newestModel(dir)
	if err != nil {
		return http.StatusInternalServerError, map[string]any{"error": "cannot read models: " + err.Error()}
	}
	if newest == nil {
		return http.StatusOK, map[string]any{"needsSync": true, "reason": "no model exists yet", "revision": "none"}
	}
	age := now.Sub(newest.created)
	stale := age > maxAge
	verdict := "within"
	if stale {
		verdict = "more than"
	}
	return http.StatusOK, map[string]any{
		"needsSync": stale,
		"reason":    fmt.Sprintf("newest model %s is %dh old, %s maxAge %dh", newest.id, int(age.Hours()), verdict, int(maxAge.Hours())),
		"revision":  newest.id,
	}
}

// authorized reports whether an Authorization header carries the token (always, when no
// token is set). Constant time, so response timing does not tell how much of a guess was right.
func authorized(header, token string) bool {
	if token == "" {
		return true
	}
	given, ok := strings.CutPrefix(header, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(given), []byte(token)) == 1
}

func readToken(path string) string {
	if path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		log.Fatalf("--token-file %s is empty", path)
	}
	return token
}

func writeAnswer(w http.ResponseWriter, status int, answer map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(answer)
}

func main() {
	models := flag.String("models", "", "folder of JSON model records (required)")
	maxAge := flag.Duration("max-age", 24*time.Hour, "retrain when the newest model is older")
	addr := flag.String("listen", "0.0.0.0:8080", "address to listen on; port 0 picks a free port")
	tokenFile := flag.String("token-file", "", "require Authorization: Bearer <this file's content>")
	flag.Parse()
	if *models == "" {
		log.Fatal("--models is required")
	}
	token := readToken(*tokenFile)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r.Header.Get("Authorization"), token) {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeAnswer(w, http.StatusUnauthorized, map[string]any{"error": "missing or wrong bearer token: send Authorization: Bearer <token>"})
			return
		}
		status, answer := decide(*models, *maxAge, time.Now())
		writeAnswer(w, status, answer)
	})
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on http://%s\n", listener.Addr())
	log.Fatal(http.Serve(listener, nil))
}
