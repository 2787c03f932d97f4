package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiandb/meridian/client"
	"github.com/meridiandb/meridian/tt"
)

func newShellCmd() *cobra.Command {
	f := &connFlags{}
	cmd := &cobra.Command{
		Use:   "shell",
		Short: "An interactive shell: transactions, reads at timestamp bounds, commit timestamps and commit wait",
		Long: `shell reads commands from standard input (type help). Outside a transaction
every command is its own transaction: get and scan are strong reads, put and
del commit at once. begin starts a read-write transaction (reads lock, writes
buffer until commit); read-only starts a strong read-only transaction and
"stale 10s" a bounded-staleness one served by the nearest replica.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			return runShell(cmd.Context(), c, cmd.InOrStdin(), cmd.OutOrStdout(), f.timeout)
		},
	}
	f.register(cmd)
	return cmd
}

const shellHelp = `commands:
  begin                 start a read-write transaction
  get KEY               read a key (locking inside a transaction)
  put KEY VALUE         write a key (buffered inside a transaction)
  del KEY               delete a key (buffered inside a transaction)
  scan START [END] [N]  read keys in [START, END) (END "" or omitted: to the end), at most N
  commit                commit the transaction: prints its timestamp and the commit wait
  abort                 roll the transaction back
  read-only             start a strong read-only transaction (one timestamp for every read)
  stale DURATION        start a bounded-staleness read-only transaction (e.g. stale 10s)
  end                   end a read-only transaction
  help                  this text
  exit                  leave (also Ctrl-D)`

type shellState struct {
	c   *client.Client
	rw  *client.ReadWriteTransaction
	ro  *client.ReadOnlyTransaction
	out io.Writer
}

func runShell(ctx context.Context, c *client.Client, in io.Reader, out io.Writer, timeout time.Duration) error {
	s := &shellState{c: c, out: out}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 2<<20)
	interactive := in == os.Stdin
	prompt := func() {
		if !interactive {
			return
		}
		switch {
		case s.rw != nil:
			fmt.Fprint(out, "meridian(txn)> ")
		case s.ro != nil:
			fmt.Fprint(out, "meridian(read-only)> ")
		default:
			fmt.Fprint(out, "meridian> ")
		}
	}
	fmt.Fprintln(out, "Meridian shell. Type help for commands.")
	prompt()
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			prompt()
			continue
		}
		if line == "exit" || line == "quit" {
			break
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		if err := s.exec(cctx, strings.Fields(line)); err != nil {
			fmt.Fprintf(out, "error: %v\n", err)
		}
		cancel()
		prompt()
	}
	if s.rw != nil {
		s.rw.Rollback(context.Background())
		fmt.Fprintln(out, "open transaction rolled back")
	}
	return sc.Err()
}

func (s *shellState) exec(ctx context.Context, args []string) error {
	out := s.out
	need := func(n int) error {
		if len(args) < n {
			return fmt.Errorf("%s needs %d argument(s); type help", args[0], n-1)
		}
		return nil
	}
	switch args[0] {
	case "help":
		fmt.Fprintln(out, shellHelp)
	case "begin":
		if s.rw != nil || s.ro != nil {
			return errors.New("a transaction is already open")
		}
		s.rw = s.c.Begin()
		fmt.Fprintln(out, "BEGIN")
	case "read-only":
		if s.rw != nil || s.ro != nil {
			return errors.New("a transaction is already open")
		}
		s.ro = s.c.ReadOnlyTransaction()
		fmt.Fprintln(out, "BEGIN READ ONLY (strong)")
	case "stale":
		if err := need(2); err != nil {
			return err
		}
		d, err := time.ParseDuration(args[1])
		if err != nil || d <= 0 {
			return fmt.Errorf("stale %q: want a positive duration", args[1])
		}
		if s.rw != nil || s.ro != nil {
			return errors.New("a transaction is already open")
		}
		s.ro = s.c.ReadOnlyTransaction().WithTimestampBound(client.MaxStaleness(d))
		fmt.Fprintf(out, "BEGIN READ ONLY (max staleness %s, nearest replica)\n", d)
	case "end":
		if s.ro == nil {
			return errors.New("no read-only transaction is open")
		}
		fmt.Fprintf(out, "END (read at %s)\n", tt.Timestamp(s.ro.Timestamp()))
		s.ro = nil
	case "get":
		if err := need(2); err != nil {
			return err
		}
		var v []byte
		var err error
		var at int64
		switch {
		case s.rw != nil:
			v, err = s.rw.Get(ctx, []byte(args[1]))
		case s.ro != nil:
			v, err = s.ro.Get(ctx, []byte(args[1]))
			at = s.ro.Timestamp()
		default:
			ro := s.c.Single()
			v, err = ro.Get(ctx, []byte(args[1]))
			at = ro.Timestamp()
		}
		if errors.Is(err, client.ErrNotFound) {
			fmt.Fprintf(out, "%s: (not found)%s\n", args[1], atSuffix(at))
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s = %q%s\n", args[1], v, atSuffix(at))
	case "put", "del":
		m := client.Delete([]byte(args[min(1, len(args)-1)]))
		if args[0] == "put" {
			if err := need(3); err != nil {
				return err
			}
			m = client.Put([]byte(args[1]), []byte(strings.Join(args[2:], " ")))
		} else if err := need(2); err != nil {
			return err
		}
		if s.ro != nil {
			return errors.New("a read-only transaction cannot write")
		}
		if s.rw != nil {
			if err := s.rw.BufferWrite(m); err != nil {
				return err
			}
			fmt.Fprintln(out, "buffered")
			return nil
		}
		start := time.Now()
		res, err := s.c.Apply(ctx, []client.Mutation{m})
		if err != nil {
			return err
		}
		printCommit(out, res, time.Since(start))
	case "scan":
		if err := need(2); err != nil {
			return err
		}
		r := client.KeyRange{Start: []byte(args[1])}
		if len(args) > 2 && args[2] != `""` {
			r.End = []byte(args[2])
		}
		limit := 100
		if len(args) > 3 {
			if _, err := fmt.Sscan(args[3], &limit); err != nil || limit <= 0 {
				return fmt.Errorf("scan limit %q: want a positive number", args[3])
			}
		}
		var kvs []client.KeyValue
		var err error
		var at int64
		switch {
		case s.rw != nil:
			kvs, err = s.rw.Scan(ctx, r, limit, false)
		case s.ro != nil:
			kvs, err = s.ro.Scan(ctx, r, limit, false)
			at = s.ro.Timestamp()
		default:
			ro := s.c.ReadOnlyTransaction()
			kvs, err = ro.Scan(ctx, r, limit, false)
			at = ro.Timestamp()
		}
		if err != nil {
			return err
		}
		for _, x := range kvs {
			fmt.Fprintf(out, "%s = %q\n", x.Key, x.Value)
		}
		fmt.Fprintf(out, "(%d keys)%s\n", len(kvs), atSuffix(at))
	case "commit":
		if s.rw == nil {
			return errors.New("no read-write transaction is open (begin)")
		}
		start := time.Now()
		res, err := s.rw.Commit(ctx)
		s.rw = nil
		if err != nil {
			return err
		}
		printCommit(out, res, time.Since(start))
	case "abort", "rollback":
		if s.rw == nil {
			return errors.New("no read-write transaction is open")
		}
		s.rw.Rollback(ctx)
		s.rw = nil
		fmt.Fprintln(out, "ROLLBACK")
	default:
		return fmt.Errorf("unknown command %q; type help", args[0])
	}
	return nil
}

func atSuffix(ts int64) string {
	if ts == 0 {
		return ""
	}
	return fmt.Sprintf("  (read at %s)", tt.Timestamp(ts))
}

func printCommit(out io.Writer, res client.CommitResult, took time.Duration) {
	if res.Timestamp == 0 {
		fmt.Fprintf(out, "COMMIT (nothing written) in %s\n", took.Round(time.Microsecond))
		return
	}
	fmt.Fprintf(out, "COMMIT at %s in %s (commit wait exposed: %s)\n", tt.Timestamp(res.Timestamp),
		took.Round(time.Microsecond), res.CommitWait.Round(time.Microsecond))
}
