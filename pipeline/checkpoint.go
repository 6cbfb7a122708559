package pipeline

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/testhook"
)

// A work directory (--workdir) lets an interrupted run continue where it stopped. After each
// finished layer L it holds:
//
//	state.json                 what the run is (fingerprint) and the next layer to do
//	layer-LLLLL.safetensors    layer L's pruned tensors, in the source dtype
//	acts-LLLLL.f32             the activations entering layer L (raw little-endian float32 [N,T,H])
//
// Files are written under temporary names and renamed; state.json is replaced last, so a
// crash at any point leaves a state that names files that exist and are complete.

// ErrCheckpoint reports an unusable work directory.
var ErrCheckpoint = errors.New("pipeline: checkpoint")

const stateFile = "state.json"

// stateVersion is the layout of state.json and the work directory it describes.
const stateVersion = 2

type checkpointState struct {
	Version int `json:"version"`
	// Sums maps every checkpoint file the state relies on (base name) to its SHA-256: a
	// file that changed since it was checkpointed is refused on resume.
	Sums        map[string]string `json:"sha256"`
	Fingerprint string            `json:"fingerprint"`
	NextLayer   int               `json:"next_layer"`
	Layers      []LayerReport     `json:"layers"`
	Tensors     []TensorReport    `json:"tensors"`
	Zeros       int               `json:"zeros"`
	Params      int               `json:"params"`
	// The allocation pre-pass: the next layer it observes (0 when it is done or not
	// begun), the summaries so far, and the sparsities once it is done.
	PrePassNext int         `json:"prepass_next_layer,omitempty"`
	Summaries   [][]float64 `json:"allocation_summaries,omitempty"`
	Allocation  []float64   `json:"allocation,omitempty"`
}

// layerBase is layer l's checkpoint file name without ".safetensors".
func layerBase(l int) string { return fmt.Sprintf("layer-%05d", l) }
func layerFile(dir string, l int) string {
	return filepath.Join(dir, layerBase(l)+".safetensors")
}
func actsFile(dir string, l int) string { return filepath.Join(dir, fmt.Sprintf("acts-%05d.f32", l)) }

// preActsFile holds the dense activations entering layer l in the allocation pre-pass.
func preActsFile(dir string, l int) string {
	return filepath.Join(dir, fmt.Sprintf("prepass-acts-%05d.f32", l))
}

// fingerprint identifies a run: the source tensors, the method, the target and the
// calibration windows. A work directory is only resumed by the same run.
func fingerprint(opt *Options) string {
	h := sha256.New()
	fmt.Fprintf(h, "method=%s target=%+v key=%q\n", opt.Method.Name, opt.Target, opt.RunKey)
	for _, name := range opt.Source.Names() {
		t, _ := opt.Source.Tensor(name)
		fmt.Fprintf(h, "%s %s %v\n", name, t.DType, t.Shape)
	}
	var b [4]byte
	for _, w := range opt.Calib {
		for _, id := range w {
			binary.LittleEndian.PutUint32(b[:], uint32(id))
			h.Write(b[:])
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func readState(dir string) (*checkpointState, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	var st checkpointState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCheckpoint, filepath.Join(dir, stateFile), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%w: %s was written by another version of wanda (layout %d, this one reads %d): remove the work directory to start over",
			ErrCheckpoint, filepath.Join(dir, stateFile), st.Version, stateVersion)
	}
	return &st, nil
}

func writeAtomic(path string, write func(w io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("%w: write %s: %w", ErrCheckpoint, tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("%w: sync %s: %w", ErrCheckpoint, tmp, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%w: close %s: %w", ErrCheckpoint, tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	return nil
}

func writeState(dir string, st *checkpointState) error {
	return writeAtomic(filepath.Join(dir, stateFile), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	})
}

// float32Bytes views x as bytes (little-endian hosts only, which is all this package runs on).
func float32Bytes(x []float32) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), len(x)*4)
}

// writeActs writes x to path and returns the SHA-256 of what it wrote.
func writeActs(path string, x []float32) (string, error) {
	h := sha256.New()
	err := writeAtomic(path, func(w io.Writer) error {
		w = io.MultiWriter(w, h)
		const step = 1 << 22
		for i := 0; i < len(x); i += step {
			if _, err := w.Write(float32Bytes(x[i:min(len(x), i+step)])); err != nil {
				return err
			}
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// fileSum is the SHA-256 of a file's contents.
func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// verify checks that the checkpoint file path still has the checksum the state recorded.
func verify(path string, sums map[string]string) error {
	want, ok := sums[filepath.Base(path)]
	if !ok {
		return fmt.Errorf("%w: %s is not recorded in the checkpoint's state: remove the work directory to start over", ErrCheckpoint, path)
	}
	got, err := fileSum(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	if got != want {
		return fmt.Errorf("%w: %s is corrupt (its SHA-256 differs from the one checkpointed): remove the work directory to start over",
			ErrCheckpoint, path)
	}
	return nil
}

func readActs(path string, dst []float32, sums map[string]string) error {
	if err := verify(path, sums); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	if st.Size() != int64(len(dst))*4 {
		return fmt.Errorf("%w: %s has %d bytes, want %d", ErrCheckpoint, path, st.Size(), int64(len(dst))*4)
	}
	if _, err := io.ReadFull(f, float32Bytes(dst)); err != nil {
		return fmt.Errorf("%w: read %s: %w", ErrCheckpoint, path, err)
	}
	for _, v := range dst[:min(len(dst), 1024)] {
		if math.IsNaN(float64(v)) {
			return fmt.Errorf("%w: %s holds NaN activations", ErrCheckpoint, path)
		}
	}
	return nil
}

// createLayerFile starts layer l's checkpoint file, declaring its pruned tensors; each is
// written as soon as it is final, so a layer's tensors are never all held in memory. The
// file appears under its name only at Close.
func createLayerFile(dir string, l int, specs []safetensors.Spec) (*safetensors.Writer, error) {
	w, err := safetensors.Create(dir, specs, safetensors.WriterOptions{BaseName: layerBase(l), Metadata: map[string]string{"format": "pt"}})
	if err != nil {
		return nil, fmt.Errorf("%w: layer %d: %w", ErrCheckpoint, l, err)
	}
	return w, nil
}

// checkpoint records that layer l is finished: its tensors (lw, closed here), the
// activations entering l+1, then the state (last, atomically).
func (r *run) checkpoint(l int, lw *safetensors.Writer) error {
	dir := r.opt.WorkDir
	if err := lw.Close(); err != nil {
		return fmt.Errorf("%w: layer %d: %w", ErrCheckpoint, l, err)
	}
	lf := layerFile(dir, l)
	sum, err := fileSum(lf)
	if err != nil {
		return fmt.Errorf("%w: layer %d: %w", ErrCheckpoint, l, err)
	}
	r.sums[filepath.Base(lf)] = sum
	delete(r.sums, filepath.Base(actsFile(dir, l)))
	if r.needFwd && l+1 < r.cfg.NumLayers {
		af := actsFile(dir, l+1)
		sum, err := writeActs(af, r.in.Samples(0, r.in.N))
		if err != nil {
			return err
		}
		r.sums[filepath.Base(af)] = sum
	}
	st := r.newState()
	st.NextLayer = l + 1
	if err := writeState(dir, st); err != nil {
		return err
	}
	os.Remove(actsFile(dir, l))
	return nil
}

// checkpointPrePass records that the allocation pre-pass observed the layers before next:
// the dense activations entering next (unless the pre-pass is done) and the state.
func (r *run) checkpointPrePass(next int) error {
	dir := r.opt.WorkDir
	delete(r.sums, filepath.Base(preActsFile(dir, next-1)))
	if next < r.cfg.NumLayers {
		af := preActsFile(dir, next)
		sum, err := writeActs(af, r.in.Samples(0, r.in.N))
		if err != nil {
			return err
		}
		r.sums[filepath.Base(af)] = sum
	}
	st := r.newState()
	if r.allocation == nil {
		st.PrePassNext = next
	}
	if err := writeState(dir, st); err != nil {
		return err
	}
	os.Remove(preActsFile(dir, next-1))
	return nil
}

// newState is the checkpoint state of the run so far (before its first layer).
func (r *run) newState() *checkpointState {
	return &checkpointState{Version: stateVersion, Sums: r.sums, Fingerprint: r.fp, Layers: r.rep.Layers,
		Tensors: r.rep.Tensors, Zeros: r.zeros, Params: r.params, Summaries: r.summaries, Allocation: r.allocation}
}

// restoreLayer copies a finished layer's tensors from the work directory into the output.
func restoreLayer(dir string, l int, w *safetensors.Writer, sums map[string]string) error {
	if err := verify(layerFile(dir, l), sums); err != nil {
		return err
	}
	f, err := safetensors.Open(layerFile(dir, l))
	if err != nil {
		return fmt.Errorf("%w: layer %d: %w", ErrCheckpoint, l, err)
	}
	defer f.Close()
	for _, t := range f.Tensors() {
		if err := w.Write(t.Name, t.Bytes()); err != nil {
			return fmt.Errorf("%w: layer %d: %w", ErrCheckpoint, l, err)
		}
	}
	return nil
}

// removeStaleTemps removes the temporary files a killed run left in the work directory
// (a layer file or activations being written); nothing refers to them.
func removeStaleTemps(dir string) {
	for _, pat := range []string{".layer-*.safetensors.tmp-*", "*.tmp"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, f := range m {
			os.Remove(f)
		}
	}
}

// clearWorkDir removes the checkpoint files of a finished run, and the directory when empty.
func clearWorkDir(dir string, layers int) {
	removeStaleTemps(dir)
	for l := 0; l <= layers; l++ {
		os.Remove(layerFile(dir, l))
		os.Remove(actsFile(dir, l))
		os.Remove(preActsFile(dir, l))
	}
	os.Remove(filepath.Join(dir, stateFile))
	os.Remove(dir)
}

// testPoint is where the tests that run the real binary reach into a run (internal/testhook):
// at point ("forward", "export", "between", "prepass") of layer l the process dies with
// SIGKILL when WANDA_CRASH_AT names it (the resume tests), or stops with SIGSTOP when
// WANDA_PAUSE_AT does (a run held while it holds its work directory).
func testPoint(point string, layer int) {
	testhook.CrashAt(point, layer)
	testhook.PauseAt(point, layer)
}
