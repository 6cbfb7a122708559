// Command faulty is a test-only wanda plugin that misbehaves on purpose, to test the host's
// error handling. Its mode comes from $WANDA_FAULTY_MODE, else from its file name
// (wanda-plugin-faulty-MODE), else it is "ok":
//
//	copy        metric returning W itself (measures the transport)
//	ok          metric |W|, logging one line per call through sdk.Logger and one plain line
//	crash       metric that exits with status 3 in the middle of Score
//	hang        metric whose Score never returns (first writing $WANDA_FAULTY_MARK, if set)
//	hang-start  sleeps for ten minutes before serving (never completes the handshake)
//	grandchild  metric that starts `sleep 600`, writes its pid to $WANDA_FAULTY_PIDFILE, hangs
//	shape       metric returning scores with one column too many
//	nan         metric whose score (1, 2) is NaN
//	inf         metric whose score (0, 0) is +Inf
//	nowrite     metric that replies without writing its result
//	error       metric returning an error (the process stays up)
//	panic       metric that panics (the SDK turns it into an error)
//	version     announces protocol version 3 (not yet defined) in the handshake
//	infoversion handshake as usual, but Info reports protocol version 3
//	kind        Info reports an unknown kind
//	v1          metric |W| served the way SDKs before protocol version 2 served it: the
//	            handshake announces version 1 whatever the host offers, Info reports 1
//	mask-nowrite pattern that replies without writing its mask
//	mask-shape  pattern returning a mask with one row too few
//	mask-ok     pattern pruning column 0 of every row
//	mask-v1     mask-ok served as a protocol-version-1 plugin (see v1)
//
// Allocation plugins (alloc-*): Observe returns [layer, Σ|W| of the layer's weights, number
// of linears] and Allocate gives every layer the target sparsity, except
//
//	alloc-ok       (nothing else)
//	alloc-v1       served as a protocol-version-1 plugin, which cannot have this kind
//	alloc-crash    exits with status 3 in Observe
//	alloc-hang     Observe never returns
//	alloc-nan      the summary's second value is NaN
//	alloc-long     the summary has 1025 values
//	alloc-error    Observe returns an error
//	alloc-count    Allocate returns one sparsity too few
//	alloc-range    Allocate gives layer 0 sparsity 1
//	alloc-nansp    Allocate gives layer 0 sparsity NaN
//	alloc-acrash   exits with status 3 in Allocate
//
// Refine plugins (refine-*) read sum and var; each row exchanges its first pruned and its
// first kept weight (a valid refinement), except
//
//	refine-ok       (nothing else)
//	refine-crash    exits with status 3 in Refine
//	refine-hang     Refine never returns
//	refine-count    also prunes the first kept weight of row 0 (one more pruned)
//	refine-group    for N:M targets, also moves row 0's first pruned weight into the next
//	                group (the row's count kept, two groups' counts changed)
//	refine-shape    returns a mask with one row too few
//	refine-nowrite  replies without writing its mask
//	refine-error    Refine returns an error
//	refine-applies  Applies panics
//	refine-skipmlp  applies only to tensors without ".mlp." in their name
//
// Tensors are row-major float32 [out, in].
package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wanda-go/wanda/plugins/internal/testhook"
	"github.com/wanda-go/wanda/plugins/sdk"
)

func mode() string {
	if m := os.Getenv("WANDA_FAULTY_MODE"); m != "" {
		return m
	}
	base := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	if m, ok := strings.CutPrefix(base, "wanda-plugin-faulty-"); ok {
		return m
	}
	return "ok"
}

func abs(w sdk.Tensor) sdk.Tensor {
	out := sdk.NewTensor(w.Shape...)
	for k, v := range w.Data {
		out.Data[k] = float32(math.Abs(float64(v)))
	}
	return out
}

func main() {
	m := mode()
	h := &testhook.Hooks
	switch m {
	case "version":
		h.HandshakeVersion = 3
	case "infoversion":
		h.InfoProtocolVersion = 3
	case "kind":
		h.InfoKind = 7
	case "v1", "mask-v1", "alloc-v1":
		h.HandshakeVersion = 1
	case "nowrite", "mask-nowrite", "refine-nowrite":
		h.SkipWrite = true
	case "hang-start":
		time.Sleep(10 * time.Minute)
	}
	switch {
	case strings.HasPrefix(m, "alloc-"):
		serveAllocation(m)
		return
	case strings.HasPrefix(m, "refine-"):
		serveRefine(m)
		return
	}
	info := sdk.MetricInfo{Name: "faulty-" + m, Description: "test plugin that misbehaves: " + m, IgnoresStats: true}
	if strings.HasPrefix(m, "mask-") {
		sdk.ServePattern(sdk.PatternInfo{Name: info.Name, Description: info.Description}, func(sc sdk.Tensor, _ sdk.Target, _ sdk.LayerInfo) (sdk.Mask, error) {
			rows, cols := sc.Shape[0], sc.Shape[1]
			if m == "mask-shape" {
				rows--
			}
			mask := sdk.NewMask(rows, cols)
			for i := range rows {
				mask.Pruned[i*cols] = true
			}
			return mask, nil
		})
		return
	}
	sdk.ServeMetric(info, func(w, _ sdk.Tensor, li sdk.LayerInfo) (sdk.Tensor, error) {
		rows, cols := w.Shape[0], w.Shape[1]
		switch m {
		case "crash":
			os.Exit(3)
		case "hang":
			if mark := os.Getenv("WANDA_FAULTY_MARK"); mark != "" {
				os.WriteFile(mark, []byte("in Score\n"), 0o644) // the host can tell the call is under way
			}
			select {}
		case "grandchild":
			cmd := exec.Command("sleep", "600")
			if err := cmd.Start(); err != nil {
				return sdk.Tensor{}, err
			}
			if err := os.WriteFile(os.Getenv("WANDA_FAULTY_PIDFILE"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
				return sdk.Tensor{}, err
			}
			select {}
		case "shape":
			return sdk.NewTensor(rows, cols+1), nil
		case "nan", "inf":
			out := abs(w)
			if m == "nan" {
				out.Data[1*cols+2] = float32(math.NaN())
			} else {
				out.Data[0] = float32(math.Inf(1))
			}
			return out, nil
		case "error":
			return sdk.Tensor{}, errors.New("deliberate failure")
		case "panic":
			panic("deliberate panic")
		case "copy":
			return w, nil
		case "v1":
		case "ok":
			sdk.Logger().Info("scored", "layer", li.Layer, "tensor", li.Tensor)
			fmt.Fprintln(os.Stderr, "[WARN] plain stderr line from layer", li.Layer)
		}
		return abs(w), nil
	})
}

func serveAllocation(m string) {
	sdk.ServeAllocation(sdk.AllocationInfo{Name: "faulty-" + m, Description: "test allocation plugin: " + m},
		func(layer int, lins []sdk.Linear, _ map[string]string) ([]float64, error) {
			switch m {
			case "alloc-crash":
				os.Exit(3)
			case "alloc-hang":
				select {}
			case "alloc-error":
				return nil, errors.New("deliberate failure")
			case "alloc-long":
				return make([]float64, 1025), nil
			}
			var sum float64
			for _, l := range lins {
				w := l.W.F32()
				for _, v := range w.Data {
					sum += math.Abs(float64(v))
				}
			}
			if m == "alloc-nan" {
				sum = math.NaN()
			}
			return []float64{float64(layer), sum, float64(len(lins))}, nil
		},
		func(sums [][]float64, t sdk.Target, _ map[string]string) ([]float64, error) {
			sp := make([]float64, len(sums))
			for i := range sp {
				sp[i] = t.Sparsity
			}
			switch m {
			case "alloc-acrash":
				os.Exit(3)
			case "alloc-count":
				sp = sp[1:]
			case "alloc-range":
				sp[0] = 1
			case "alloc-nansp":
				sp[0] = math.NaN()
			}
			return sp, nil
		})
}

func serveRefine(m string) {
	sdk.ServeRefine(sdk.RefineInfo{
		Name: "faulty-" + m, Description: "test refine plugin: " + m,
		Needs: []sdk.Stat{sdk.StatSum, sdk.StatVar},
		Applies: func(li sdk.LayerInfo) bool {
			switch m {
			case "refine-applies":
				panic("deliberate panic in Applies")
			case "refine-skipmlp":
				return !strings.Contains(li.Tensor, ".mlp.")
			}
			return true
		},
	}, func(w sdk.Tensor, mask sdk.Mask, st sdk.Stats, t sdk.Target, _ sdk.LayerInfo) (sdk.Mask, error) {
		rows, cols := w.Shape[0], w.Shape[1]
		if len(st.Sum) != cols || len(st.Var) != cols {
			return sdk.Mask{}, fmt.Errorf("statistics: %d sums, %d variances for %d columns", len(st.Sum), len(st.Var), cols)
		}
		switch m {
		case "refine-crash":
			os.Exit(3)
		case "refine-hang":
			select {}
		case "refine-error":
			return sdk.Mask{}, errors.New("deliberate failure")
		case "refine-shape":
			return sdk.NewMask(rows-1, cols), nil
		}
		for i := range rows {
			row := mask.Pruned[i*cols : (i+1)*cols]
			p, k := -1, -1
			for j, x := range row {
				if x && p < 0 {
					p = j
				}
				if !x && k < 0 {
					k = j
				}
			}
			if m == "refine-group" && i == 0 && t.M > 0 && p >= 0 {
				g := (p/t.M + 1) * t.M % cols
				for j := g; j < g+t.M; j++ {
					if !row[j] {
						row[p], row[j] = false, true
						break
					}
				}
				continue
			}
			if p >= 0 && k >= 0 && t.M == 0 {
				row[p], row[k] = false, true
			}
			if m == "refine-count" && i == 0 && k >= 0 {
				row[k] = true
				for j, x := range row {
					if !x {
						row[j] = true
						break
					}
				}
			}
		}
		return mask, nil
	})
}
