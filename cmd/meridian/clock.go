package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiandb/meridian/tt"
)

type clockFlags struct {
	ntp        string
	epsilon    time.Duration
	output     string
	watch      bool
	interval   time.Duration
	timeout    time.Duration
	maxEps     time.Duration
	driftBound float64
}

func newClockCmd() *cobra.Command {
	f := &clockFlags{}
	cmd := &cobra.Command{
		Use:   "clock",
		Short: "Show the TrueTime interval this machine would use, and every time server's sample",
		Long: `clock reads the interval clock the way a Meridian node does and prints
[earliest, latest], its uncertainty ε, and for each NTP server its offset, round
trip, root delay and dispersion, stratum, error bound and whether Marzullo's
intersection excluded it as a falseticker.

Without --ntp it uses the system clock with an assumed ε (--epsilon): nothing
measures that bound, and the output says so.

Exit status is 1 when the clock is unhealthy (no majority of servers agree, ε
above --max-epsilon, or no successful sample).`,
		Example: `  meridian clock
  meridian clock --ntp 127.0.0.1:11123
  meridian clock --ntp a.example:123,b.example:123,c.example:123 -w json
  meridian clock --ntp 127.0.0.1:11123 --watch --interval 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runClock(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.ntp, "ntp", "", "comma-separated NTP servers as host:port (port 123 if omitted); empty uses the system clock with --epsilon")
	fl.DurationVar(&f.epsilon, "epsilon", 5*time.Millisecond, "assumed uncertainty of the system clock when --ntp is not given")
	fl.StringVarP(&f.output, "output", "w", "table", "output format: table or json (one JSON object per reading)")
	fl.BoolVar(&f.watch, "watch", false, "keep polling and printing until interrupted")
	fl.DurationVar(&f.interval, "interval", time.Second, "time between readings with --watch")
	fl.DurationVar(&f.timeout, "timeout", time.Second, "timeout of each NTP query")
	fl.DurationVar(&f.maxEps, "max-epsilon", 100*time.Millisecond, "ε above which the clock counts as unhealthy")
	fl.Float64Var(&f.driftBound, "drift-bound", tt.DefaultDriftBound, "assumed worst-case drift of the local oscillator, seconds per second")
	return cmd
}

// clockReport is the JSON shape of one reading.
type clockReport struct {
	Source     string         `json:"source"`
	Healthy    bool           `json:"healthy"`
	Error      string         `json:"error,omitempty"`
	EarliestNs int64          `json:"earliest_ns"`
	LatestNs   int64          `json:"latest_ns"`
	EpsilonNs  int64          `json:"epsilon_ns"`
	Servers    []serverReport `json:"servers"`
}

type serverReport struct {
	Server           string            `json:"server"`
	HasSample        bool              `json:"has_sample"`
	OffsetNs         int64             `json:"offset_ns"`
	RTTNs            int64             `json:"rtt_ns"`
	RootDelayNs      int64             `json:"root_delay_ns"`
	RootDispersionNs int64             `json:"root_dispersion_ns"`
	Stratum          uint8             `json:"stratum"`
	ErrorBoundNs     int64             `json:"error_bound_ns"`
	Excluded         bool              `json:"excluded"`
	Jumped           bool              `json:"jumped"`
	Accepted         uint64            `json:"accepted"`
	Rejected         uint64            `json:"rejected"`
	Rejections       map[string]uint64 `json:"rejections,omitempty"`
	LastError        string            `json:"last_error,omitempty"`
}

func runClock(cmd *cobra.Command, f *clockFlags) error {
	if err := outputFormat(f.output, "table", "json"); err != nil {
		return err
	}
	if f.watch && f.interval <= 0 {
		return errors.New("--interval must be positive")
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	out := cmd.OutOrStdout()

	var read func(ctx context.Context) clockReport
	if servers := splitList(f.ntp); len(servers) > 0 {
		c, err := tt.NewNTP(tt.NTPConfig{
			Servers:      servers,
			QueryTimeout: f.timeout,
			DriftBound:   f.driftBound,
			MaxEpsilon:   f.maxEps,
			PollInterval: max(f.interval, time.Second),
			Logger:       slog.Default(),
		})
		if err != nil {
			return err
		}
		defer c.Close()
		read = func(ctx context.Context) clockReport {
			_ = c.Sync(ctx)
			return ntpReport(c)
		}
	} else {
		c := tt.NewSystem(f.epsilon)
		read = func(context.Context) clockReport { return systemReport(c) }
	}

	for {
		r := read(ctx)
		if err := printClock(out, f.output, r); err != nil {
			return err
		}
		if !f.watch {
			if !r.Healthy {
				return &exitError{code: 1, err: errors.New("clock unhealthy: " + r.Error)}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(f.interval):
		}
	}
}

func ntpReport(c *tt.NTP) clockReport {
	r := clockReport{Source: c.Describe(), Servers: []serverReport{}}
	iv, err := c.Now()
	if err != nil {
		r.Error = err.Error()
	} else {
		r.Healthy = true
		r.EarliestNs, r.LatestNs, r.EpsilonNs = int64(iv.Earliest), int64(iv.Latest), int64(iv.Epsilon())
	}
	st := c.Status()
	if err == nil && st.Err != nil {
		r.Error = st.Err.Error()
	}
	for _, s := range st.Servers {
		r.Servers = append(r.Servers, serverReport{
			Server:           s.Server,
			HasSample:        s.HasSample,
			OffsetNs:         int64(s.Last.Offset),
			RTTNs:            int64(s.Last.RTT),
			RootDelayNs:      int64(s.Last.RootDelay),
			RootDispersionNs: int64(s.Last.RootDispersion),
			Stratum:          s.Last.Stratum,
			ErrorBoundNs:     int64(s.Last.Err),
			Excluded:         s.Excluded,
			Jumped:           s.Jumped,
			Accepted:         s.Accepted,
			Rejected:         s.Rejected,
			Rejections:       s.Rejections,
			LastError:        s.LastError,
		})
	}
	return r
}

func systemReport(c *tt.System) clockReport {
	iv, _ := c.Now()
	return clockReport{
		Source:     c.Describe(),
		Healthy:    true,
		EarliestNs: int64(iv.Earliest),
		LatestNs:   int64(iv.Latest),
		EpsilonNs:  int64(iv.Epsilon()),
		Servers:    []serverReport{},
	}
}

func printClock(w io.Writer, format string, r clockReport) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(r)
	}
	fmt.Fprintf(w, "source:    %s\n", r.Source)
	if r.Healthy {
		fmt.Fprintf(w, "healthy:   yes\n")
		fmt.Fprintf(w, "earliest:  %s\n", tt.Timestamp(r.EarliestNs))
		fmt.Fprintf(w, "latest:    %s\n", tt.Timestamp(r.LatestNs))
		fmt.Fprintf(w, "epsilon:   %s\n", time.Duration(r.EpsilonNs))
	} else {
		fmt.Fprintf(w, "healthy:   NO (%s)\n", r.Error)
	}
	if len(r.Servers) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVER\tOFFSET\tRTT\tROOT-DELAY\tROOT-DISP\tSTRATUM\tERR-BOUND\tSTATUS\tREJECTED")
		for _, s := range r.Servers {
			status := "agrees"
			switch {
			case !s.HasSample:
				status = "no sample"
			case s.Excluded:
				status = "EXCLUDED (falseticker or stale)"
			case s.Jumped:
				status = "jumped, awaiting confirmation"
			}
			rej := fmt.Sprint(s.Rejected)
			if len(s.Rejections) > 0 {
				var parts []string
				for k, v := range s.Rejections {
					parts = append(parts, fmt.Sprintf("%s=%d", k, v))
				}
				sort.Strings(parts)
				rej += " (" + strings.Join(parts, ", ") + ")"
			}
			if !s.HasSample {
				fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t%s\t%s\n", s.Server, status, rej)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Server,
				time.Duration(s.OffsetNs), time.Duration(s.RTTNs), time.Duration(s.RootDelayNs),
				time.Duration(s.RootDispersionNs), s.Stratum, time.Duration(s.ErrorBoundNs), status, rej)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, s := range r.Servers {
			if s.LastError != "" {
				fmt.Fprintf(w, "  %s: last error: %s\n", s.Server, s.LastError)
			}
		}
	}
	fmt.Fprintln(w)
	return nil
}
