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
//	version     announces protocol version 2 in the handshake
//	infoversion handshake version 1, but Info reports protocol version 2
//	kind        Info reports an unknown kind
//	mask-nowrite pattern that replies without writing its mask
//	mask-shape  pattern returning a mask with one row too few
//	mask-ok     pattern pruning column 0 of every row
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
		h.HandshakeVersion = 2
	case "infoversion":
		h.InfoProtocolVersion = 2
	case "kind":
		h.InfoKind = 7
	case "nowrite", "mask-nowrite":
		h.SkipWrite = true
	case "hang-start":
		time.Sleep(10 * time.Minute)
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
		case "ok":
			sdk.Logger().Info("scored", "layer", li.Layer, "tensor", li.Tensor)
			fmt.Fprintln(os.Stderr, "[WARN] plain stderr line from layer", li.Layer)
		}
		return abs(w), nil
	})
}
