package tokenb

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Summary describes a set of durations.
type Summary struct {
	N                       int
	Min, P50, P90, P99, Max time.Duration
	Mean                    time.Duration
}

// Summarize sorts ds (in place) and summarizes it. Percentiles are
// nearest-rank.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Summary{
		N: len(ds), Min: ds[0], Max: ds[len(ds)-1], Mean: sum / time.Duration(len(ds)),
		P50: Percentile(ds, 50), P90: Percentile(ds, 90), P99: Percentile(ds, 99),
	}
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999)
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// String formats the summary in milliseconds.
func (s Summary) String() string {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }
	return fmt.Sprintf("n=%d min=%sms p50=%sms p90=%sms p99=%sms max=%sms mean=%sms",
		s.N, ms(s.Min), ms(s.P50), ms(s.P90), ms(s.P99), ms(s.Max), ms(s.Mean))
}

// Histogram counts times per second after an origin.
type Histogram struct {
	Origin time.Time
	// Counts[i] is how many times fell in [Origin+i s, Origin+(i+1) s).
	Counts []int
	// Before counts times before Origin.
	Before int
}

// NewHistogram buckets ts by second from origin.
func NewHistogram(origin time.Time, ts []time.Time) Histogram {
	h := Histogram{Origin: origin}
	for _, t := range ts {
		if t.Before(origin) {
			h.Before++
			continue
		}
		i := int(t.Sub(origin) / time.Second)
		for len(h.Counts) <= i {
			h.Counts = append(h.Counts, 0)
		}
		h.Counts[i]++
	}
	return h
}

// Busy returns the counts from the first to the last non-empty second,
// and the offset of the first.
func (h Histogram) Busy() ([]int, int) {
	first := slices.IndexFunc(h.Counts, func(n int) bool { return n > 0 })
	if first < 0 {
		return nil, 0
	}
	last := len(h.Counts) - 1
	for h.Counts[last] == 0 {
		last--
	}
	return h.Counts[first : last+1], first
}

// Stats returns the minimum, median and maximum count over the busy
// seconds.
func (h Histogram) Stats() (lo, median, hi int) {
	busy, _ := h.Busy()
	if len(busy) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(busy)
	slices.Sort(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}

// Rows formats the per-second counts, perRow to a line, each line
// prefixed with its first second.
func (h Histogram) Rows(perRow int) string {
	var b strings.Builder
	for i := 0; i < len(h.Counts); i += perRow {
		fmt.Fprintf(&b, "t+%4ds:", i)
		for _, n := range h.Counts[i:min(i+perRow, len(h.Counts))] {
			fmt.Fprintf(&b, " %5d", n)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Mem is a process's memory: the Go runtime's view and the kernel's.
type Mem struct {
	HeapAlloc uint64 `json:"heap_alloc"`
	HeapInuse uint64 `json:"heap_inuse"`
	HeapSys   uint64 `json:"heap_sys"`
	Sys       uint64 `json:"sys"`
	NumGC     uint32 `json:"num_gc"`
	// VmRSS and VmHWM (peak RSS) from /proc/self/status, in bytes; zero
	// where there is no procfs.
	VmRSS int64 `json:"vm_rss"`
	VmHWM int64 `json:"vm_hwm"`
}

// ReadMem reads runtime.MemStats and /proc/self/status.
func ReadMem() Mem {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := Mem{HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, HeapSys: ms.HeapSys, Sys: ms.Sys, NumGC: ms.NumGC}
	m.VmRSS, m.VmHWM = procStatus()
	return m
}

func procStatus() (rss, hwm int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
	}
	return rss, hwm
}

// ResetPeakRSS resets VmHWM to the current RSS (Linux: "5" to
// /proc/self/clear_refs), so a later VmHWM is the peak of what follows.
func ResetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// MemSampler samples ReadMem periodically and keeps the peaks.
type MemSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak Mem
}

// StartMemSampler samples every interval until Stop.
func StartMemSampler(interval time.Duration) *MemSampler {
	s := &MemSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *MemSampler) sample() {
	m := ReadMem()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peak.HeapAlloc = max(s.peak.HeapAlloc, m.HeapAlloc)
	s.peak.HeapInuse = max(s.peak.HeapInuse, m.HeapInuse)
	s.peak.HeapSys = max(s.peak.HeapSys, m.HeapSys)
	s.peak.Sys = max(s.peak.Sys, m.Sys)
	s.peak.VmRSS = max(s.peak.VmRSS, m.VmRSS)
	s.peak.VmHWM = max(s.peak.VmHWM, m.VmHWM)
	s.peak.NumGC = m.NumGC
}

// Stop takes a last sample and returns the peaks (NumGC is the last count).
func (s *MemSampler) Stop() Mem {
	close(s.stop)
	<-s.done
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// MiB formats bytes in mebibytes.
func MiB[T int64 | uint64](n T) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}
