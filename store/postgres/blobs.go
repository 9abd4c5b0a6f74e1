package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/oauth2/google"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob:// buckets (Azure Blob Storage)
	_ "gocloud.dev/blob/fileblob"  // file:// buckets
	_ "gocloud.dev/blob/gcsblob"   // gs:// buckets (Google Cloud Storage)
	_ "gocloud.dev/blob/s3blob"    // s3:// buckets (AWS and any S3-compatible server)
	"gocloud.dev/gcerrors"
	"gocloud.dev/gcp"
)

// bucket is where the stream bodies are: a gocloud.dev/blob bucket, and,
// for a file:// bucket, its directory, whose files are fsynced before a
// write returns (fileblob renames a temporary file into place, unsynced).
type bucket struct {
	b       *blob.Bucket
	dir     string // the directory of a file:// bucket, else ""
	display string // the URL, for messages
}

// BlobsURL returns the gocloud.dev/blob URL that openBucket opens for
// raw, the value of --blobs (BES_BLOBS):
//
//   - a path without a scheme (/srv/bes-blobs, ./blobs) is a directory:
//     file:///abs/path;
//   - file:///path gets create_dir=true and metadata=skip (no sidecar
//     attribute files) unless it says otherwise;
//   - s3://bucket/some/prefix?… has its path moved to the prefix
//     parameter (gocloud.dev takes the bucket from the host and the
//     prefix only from ?prefix=), so that s3://bucket/team/ keeps its
//     blobs under team/ in the bucket. The other parameters are
//     gocloud.dev's (v0.47: endpoint, region, use_path_style,
//     disable_https, profile, anonymous, …; see gocloud.dev/aws
//     V2ConfigFromURLParams). Credentials come from the environment and
//     the SDK's files (AWS_ACCESS_KEY_ID, AWS_PROFILE, …), never the URL;
//   - gs://bucket/prefix (gocloud.dev/blob/gcsblob) and
//     azblob://container/prefix (gocloud.dev/blob/azureblob) likewise:
//     Google's application default credentials
//     (GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default
//     login, the GCE metadata server), and Azure's AZURE_STORAGE_ACCOUNT
//     with AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN,
//     AZURE_STORAGE_CONNECTION_STRING or azidentity's default chain
//     (AZURE_CLIENT_ID…, managed identity, az login).
//
// Other schemes are passed on as they are (gocloud.dev's mem://, for
// one).
func BlobsURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("store: no blob URL")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || len(u.Scheme) == 1 { // C:\… is a path
		abs, err := filepath.Abs(raw)
		if err != nil {
			return "", fmt.Errorf("store: blobs %q: %w", raw, err)
		}
		u = &url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	}
	q := u.Query()
	switch u.Scheme {
	case "file":
		if !q.Has("create_dir") {
			q.Set("create_dir", "true")
		}
		if !q.Has("metadata") {
			q.Set("metadata", "skip")
		}
	case "s3", "gs", "azblob":
		if p := strings.Trim(u.Path, "/"); p != "" {
			if q.Has("prefix") {
				return "", fmt.Errorf("store: blobs %q: a prefix both in the path and in ?prefix=", raw)
			}
			q.Set("prefix", p+"/")
			u.Path = ""
		}
		if u.User != nil {
			return "", fmt.Errorf("store: blobs %q: credentials do not go in the URL (the SDK reads them from the environment and its files: AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_KEY, …)", u.Redacted())
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// openBucket opens the bucket of a --blobs value (see BlobsURL).
func openBucket(ctx context.Context, raw string) (*bucket, error) {
	s, err := BlobsURL(raw)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(s)
	if u.Scheme == "gs" {
		if err := gcsCredentials(ctx, u); err != nil {
			return nil, err
		}
	}
	b, err := blob.OpenBucket(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("store: open blobs %s: %w", u.Redacted(), err)
	}
	out := &bucket{b: b, display: u.Redacted()}
	if u.Scheme == "file" {
		out.dir = filepath.FromSlash(u.Path)
	}
	return out, nil
}

// gcsCredentials finds Google's application default credentials for a
// gs:// bucket before gcsblob does: gcsblob, finding none, prints a
// warning on standard output (where bes writes its results) and goes on
// unauthenticated, so that every request fails later. A bucket that asks
// for no credentials (anonymous=true, access_id=-) or a storage emulator
// (STORAGE_EMULATOR_HOST) needs none.
func gcsCredentials(ctx context.Context, u *url.URL) error {
	q := u.Query()
	if q.Get("anonymous") == "true" || q.Get("access_id") == "-" ||
		os.Getenv("STORAGE_EMULATOR_HOST") != "" || os.Getenv("STORAGE_EMULATOR_HOST_GRPC") != "" {
		return nil
	}
	var err error
	if d := q.Get("universe_domain"); d != "" {
		_, err = gcp.DefaultCredentialsWithParams(ctx, google.CredentialsParams{UniverseDomain: d})
	} else {
		_, err = gcp.DefaultCredentials(ctx)
	}
	if err != nil {
		return fmt.Errorf("store: open blobs %s: no Google credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud auth application-default login, or a GCE metadata server; anonymous=true for a public bucket): %w", u.Redacted(), err)
	}
	return nil
}

// put writes the blob name from r, durably: when put returns nil the blob
// is whole in the bucket (S3: the PUT was answered; file://: the file and
// its directories are fsynced). A blob that exists is an error (names are
// never reused).
func (b *bucket) put(ctx context.Context, name string, r io.Reader) error {
	var tmp *os.File
	w, err := b.b.NewWriter(ctx, name, &blob.WriterOptions{
		ContentType: "application/octet-stream",
		IfNotExist:  true,
		BeforeWrite: func(as func(any) bool) error {
			var f *os.File
			if as(&f) {
				tmp = f
			}
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("store: write blob %s: %w", name, err)
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return fmt.Errorf("store: write blob %s: %w", name, err)
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			w.Close()
			return fmt.Errorf("store: sync blob %s: %w", name, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("store: write blob %s: %w", name, err)
	}
	if b.dir != "" {
		// The new name, and the directories made for it, are durable.
		for d := path.Dir(name); ; d = path.Dir(d) {
			if err := syncDir(filepath.Join(b.dir, filepath.FromSlash(d))); err != nil {
				return fmt.Errorf("store: sync blob %s: %w", name, err)
			}
			if d == "." || d == "/" {
				break
			}
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// open opens the blob name for reading.
func (b *bucket) open(ctx context.Context, name string) (*blob.Reader, error) {
	r, err := b.b.NewReader(ctx, name, nil)
	if err != nil {
		return nil, blobErr(name, err)
	}
	return r, nil
}

// remove deletes the blob name; one that is not there is no error.
func (b *bucket) remove(ctx context.Context, name string) error {
	if err := b.b.Delete(ctx, name); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("store: delete blob %s: %w", name, err)
	}
	return nil
}

// errBlobMissing is wrapped by the error for a blob the catalog names and
// the bucket does not have.
var errBlobMissing = errors.New("blob missing")

func blobErr(name string, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("store: blob %s: %w (%v)", name, errBlobMissing, err)
	}
	return fmt.Errorf("store: read blob %s: %w", name, err)
}

// chunkReader reads a stream's chunks one after the other as one bess
// file, opening each blob when the one before it is read, and checking
// that each has the size its row records.
type chunkReader struct {
	ctx    context.Context
	b      *bucket
	chunks []chunk
	cur    *blob.Reader
	name   string // the blob of cur
	left   int64  // bytes of the current chunk not read yet
	err    error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.cur == nil {
			if len(r.chunks) == 0 {
				return 0, io.EOF
			}
			c := r.chunks[0]
			r.chunks = r.chunks[1:]
			cur, err := r.b.open(r.ctx, c.blob)
			if err != nil {
				r.err = err
				return 0, err
			}
			if cur.Size() != c.size {
				cur.Close()
				r.err = fmt.Errorf("store: blob %s holds %d bytes, the catalog says %d", c.blob, cur.Size(), c.size)
				return 0, r.err
			}
			r.cur, r.name, r.left = cur, c.blob, c.size
		}
		if r.left == 0 {
			r.cur.Close()
			r.cur = nil
			continue
		}
		if int64(len(p)) > r.left {
			p = p[:r.left]
		}
		n, err := r.cur.Read(p)
		r.left -= int64(n)
		if err == io.EOF {
			if r.left > 0 {
				r.err = fmt.Errorf("store: blob %s ends %d bytes early: %w", r.name, r.left, io.ErrUnexpectedEOF)
				return n, r.err
			}
			err = nil
		}
		if err != nil {
			r.err = fmt.Errorf("store: read blob %s: %w", r.name, err)
			return n, r.err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// Close closes the blob being read.
func (r *chunkReader) Close() error {
	if r.cur != nil {
		r.cur.Close()
		r.cur = nil
	}
	return nil
}
