// Command tlogverify is an independent client of a c2sp.org/tlog-tiles log, written
// from the C2SP specifications (tlog-tiles, tlog-checkpoint, signed-note) with only the
// Go standard library and golang.org/x/mod's sumdb/note and sumdb/tlog. It shares no
// code with the ledger it checks.
//
// It fetches <prefix>/checkpoint, verifies the log's signature with the given verifier
// key, reads hash tiles over HTTP through a tlog.TileReader (so every hash it uses is
// authenticated against the checkpoint's root by tlog.TileHashReader), proves and checks
// the inclusion of the given entries (their bytes read from the entry bundles, hashed as
// RFC 6962 leaves), checks that every entry of those bundles hashes to its leaf, and
// proves and checks the consistency of an older checkpoint with the current one.
//
// Usage:
//
//	tlogverify -prefix URL -vkey VKEY [-api-key KEY] [-entries 0,5,300]
//	           [-old FILE] [-save FILE]
//
// Exit status 0: every check passed (a summary line is printed); 1: a check failed or
// the log could not be read (the reason is printed).
package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8 // c2sp.org/tlog-tiles

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
	raw    []byte
}

type client struct {
	prefix string
	apiKey string
	http   *http.Client
	calls  int
}

func (c *client) get(path string, withKey bool) ([]byte, error) {
	req, err := http.NewRequest("GET", c.prefix+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	if withKey && c.apiKey != "" {
		req.Header.Set("X-API-Key", c.apiKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	c.calls++
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// openCheckpoint verifies a signed checkpoint note with the verifier and parses its
// body: origin, decimal size, base64 root hash, then optional extension lines.
func openCheckpoint(msg []byte, verifier note.Verifier) (checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint signature: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return checkpoint{}, errors.New("checkpoint: fewer than three lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return checkpoint{}, fmt.Errorf("checkpoint: bad size %q", lines[1])
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		return checkpoint{}, fmt.Errorf("checkpoint: bad root hash %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	return checkpoint{origin: lines[0], size: size, root: root, raw: msg}, nil
}

// tileReader reads hash tiles over HTTP. x/mod names a tile tile/<H>/<L>/<N>[.p/<W>];
// c2sp.org/tlog-tiles fixes H = 8 and leaves it out of the path: tile/<L>/<N>[.p/<W>].
type tileReader struct{ c *client }

func (r tileReader) Height() int { return tileHeight }

func c2spPath(t tlog.Tile) string {
	return strings.Replace(t.Path(), fmt.Sprintf("tile/%d/", tileHeight), "tile/", 1)
}

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := r.c.get(c2spPath(t), false)
		if err != nil {
			return nil, err
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%s: %d bytes, want %d", c2spPath(t), len(data), t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// bundle reads the entry bundle holding entry i in a tree of the given size: a sequence
// of entries, each prefixed by its length as a big-endian uint16.
func bundle(c *client, i, size int64) (first int64, entries [][]byte, err error) {
	n := i / (1 << tileHeight)
	width := size - n*(1<<tileHeight)
	if width > 1<<tileHeight {
		width = 1 << tileHeight
	}
	t := tlog.Tile{H: tileHeight, L: 0, N: n, W: int(width)}
	path := strings.Replace(c2spPath(t), "tile/0/", "tile/entries/", 1)
	data, err := c.get(path, true)
	if err != nil {
		return 0, nil, err
	}
	for len(data) > 0 {
		if len(data) < 2 {
			return 0, nil, fmt.Errorf("%s: truncated length prefix", path)
		}
		l := int(data[0])<<8 | int(data[1])
		if len(data) < 2+l {
			return 0, nil, fmt.Errorf("%s: truncated entry", path)
		}
		entries = append(entries, data[2:2+l])
		data = data[2+l:]
	}
	if int64(len(entries)) != width {
		return 0, nil, fmt.Errorf("%s: %d entries, want %d", path, len(entries), width)
	}
	return n * (1 << tileHeight), entries, nil
}

func run() error {
	prefix := flag.String("prefix", "", "the log's URL prefix, e.g. http://host/tlog/PROJECT")
	vkey := flag.String("vkey", "", "the log's verifier key (name+hexid+base64)")
	apiKey := flag.String("api-key", "", "API key for the entry bundles")
	entryList := flag.String("entries", "", "comma-separated entry indexes to prove")
	oldPath := flag.String("old", "", "an older checkpoint note to prove consistent")
	savePath := flag.String("save", "", "write the fetched checkpoint note here")
	flag.Parse()
	if *prefix == "" || *vkey == "" {
		return errors.New("usage: tlogverify -prefix URL -vkey VKEY [-api-key KEY] [-entries I,J] [-old FILE] [-save FILE]")
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(*vkey))
	if err != nil {
		return fmt.Errorf("verifier key: %v", err)
	}
	c := &client{prefix: strings.TrimRight(*prefix, "/"), apiKey: *apiKey,
		http: &http.Client{Timeout: 30 * time.Second}}

	msg, err := c.get("checkpoint", false)
	if err != nil {
		return err
	}
	cp, err := openCheckpoint(msg, verifier)
	if err != nil {
		return err
	}
	if *savePath != "" {
		if err := os.WriteFile(*savePath, msg, 0o644); err != nil {
			return err
		}
	}
	tree := tlog.Tree{N: cp.size, Hash: cp.root}
	hr := tlog.TileHashReader(tree, tileReader{c})
	if cp.size > 0 {
		// Reading the root through the tiles checks them against the checkpoint.
		th, err := tlog.TreeHash(cp.size, hr)
		if err != nil {
			return fmt.Errorf("tree hash from tiles: %v", err)
		}
		if th != cp.root {
			return fmt.Errorf("tiles give root %v, the checkpoint says %v", th, cp.root)
		}
	}

	proved := 0
	checkedBundles := map[int64]bool{}
	if *entryList != "" {
		for _, f := range strings.Split(*entryList, ",") {
			i, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || i < 0 || i >= cp.size {
				return fmt.Errorf("entry %q is not in a tree of size %d", f, cp.size)
			}
			first, entries, err := bundle(c, i, cp.size)
			if err != nil {
				return err
			}
			if !checkedBundles[first] {
				// Every entry of the bundle hashes to its (authenticated) leaf.
				indexes := make([]int64, len(entries))
				for k := range entries {
					indexes[k] = tlog.StoredHashIndex(0, first+int64(k))
				}
				leaves, err := hr.ReadHashes(indexes)
				if err != nil {
					return fmt.Errorf("leaf hashes: %v", err)
				}
				for k, e := range entries {
					if tlog.RecordHash(e) != leaves[k] {
						return fmt.Errorf("entry %d does not hash to its leaf", first+int64(k))
					}
				}
				checkedBundles[first] = true
			}
			p, err := tlog.ProveRecord(cp.size, i, hr)
			if err != nil {
				return fmt.Errorf("inclusion proof of %d: %v", i, err)
			}
			if err := tlog.CheckRecord(p, cp.size, cp.root, i, tlog.RecordHash(entries[i-first])); err != nil {
				return fmt.Errorf("inclusion of entry %d: %v", i, err)
			}
			proved++
		}
	}

	consistent := ""
	if *oldPath != "" {
		oldMsg, err := os.ReadFile(*oldPath)
		if err != nil {
			return err
		}
		old, err := openCheckpoint(oldMsg, verifier)
		if err != nil {
			return fmt.Errorf("old %v", err)
		}
		if old.origin != cp.origin {
			return fmt.Errorf("old checkpoint is of %q, not %q", old.origin, cp.origin)
		}
		if old.size > cp.size {
			return fmt.Errorf("old checkpoint (size %d) is larger than the current one (%d)", old.size, cp.size)
		}
		if old.size == cp.size {
			if old.root != cp.root {
				return fmt.Errorf("fork: two roots at size %d", cp.size)
			}
		} else if old.size > 0 {
			p, err := tlog.ProveTree(cp.size, old.size, hr)
			if err != nil {
				return fmt.Errorf("consistency proof: %v", err)
			}
			if err := tlog.CheckTree(p, cp.size, cp.root, old.size, old.root); err != nil {
				return fmt.Errorf("consistency %d -> %d: %v", old.size, cp.size, err)
			}
		}
		consistent = fmt.Sprintf(" consistent_from=%d", old.size)
	}
	fmt.Printf("ok origin=%s size=%d root=%s proved=%d bundles=%d%s requests=%d\n",
		cp.origin, cp.size, base64.StdEncoding.EncodeToString(cp.root[:]), proved,
		len(checkedBundles), consistent, c.calls)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tlogverify:", err)
		os.Exit(1)
	}
}
