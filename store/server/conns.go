package server

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// DefaultMaxConnsPerClient is how many connections one client (one IP
// address) may hold open at once. Bazel opens one per build; a CI host
// behind one address running many builds at once opens one each.
const DefaultMaxConnsPerClient = 256

// LimitConnsPerClient returns a listener that accepts at most max
// connections at once from one IP address (issue 13: clients that vanish,
// or never speak, each held a connection): one over it is closed as soon
// as it is accepted, before a byte is read, and the client sees it reset
// (gRPC clients retry with backoff). Refusals are logged to log (nil: not
// logged), at most one line per DefaultAuthLogEvery, counting those in
// between. A connection is counted until it is closed. max <= 0 means
// DefaultMaxConnsPerClient. It is safe for concurrent use.
func LimitConnsPerClient(l net.Listener, max int, log io.Writer) net.Listener {
	if max <= 0 {
		max = DefaultMaxConnsPerClient
	}
	return &limitListener{Listener: l, max: max, log: log, open: map[string]int{}}
}

type limitListener struct {
	net.Listener
	max int
	log io.Writer

	mu       sync.Mutex
	open     map[string]int // connections open, by client IP address
	logged   time.Time
	unlogged int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientOf(c.RemoteAddr().String())
		l.mu.Lock()
		if l.open[ip] >= l.max {
			l.refused(ip)
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open[ip]++
		l.mu.Unlock()
		return &countedConn{Conn: c, release: sync.OnceFunc(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.open[ip]--; l.open[ip] <= 0 {
				delete(l.open, ip)
			}
		})}, nil
	}
}

// refused logs a connection refused (l.mu held), rate-limited.
func (l *limitListener) refused(ip string) {
	if l.log == nil {
		return
	}
	l.unlogged++
	now := time.Now()
	if !l.logged.IsZero() && now.Sub(l.logged) < DefaultAuthLogEvery {
		return
	}
	fmt.Fprintf(l.log, "bes: %s\n", logSafe(fmt.Sprintf("refused %d connection(s), the last from %s: %d connections open from it, the most one client may (bes serve --max-connections-per-client)", l.unlogged, ip, l.open[ip])))
	l.logged, l.unlogged = now, 0
}

// countedConn gives back its place when it is closed.
type countedConn struct {
	net.Conn
	release func()
}

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}
