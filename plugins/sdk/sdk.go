package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/wanda-go/wanda/plugins/internal/shm"
	"github.com/wanda-go/wanda/plugins/internal/testhook"
	"github.com/wanda-go/wanda/plugins/internal/wire"
	pb "github.com/wanda-go/wanda/plugins/proto"
)

// ProtocolVersion is the wanda plugin protocol version this SDK speaks.
const ProtocolVersion = wire.ProtocolVersion

// Tensor is a dense row-major float32 tensor.
type Tensor struct {
	Shape []int
	Data  []float32
}

// NewTensor allocates a zeroed tensor of the given shape.
func NewTensor(shape ...int) Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return Tensor{Shape: slices.Clone(shape), Data: make([]float32, n)}
}

// Mask is a dense row-major [out, in] mask; Pruned[i*in+j] is true when weight (i, j) is pruned.
type Mask struct {
	Shape  []int
	Pruned []bool
}

// NewMask allocates an all-kept mask of the given shape.
func NewMask(shape ...int) Mask {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return Mask{Shape: slices.Clone(shape), Pruned: make([]bool, n)}
}

// LayerInfo identifies the linear layer a call works on and describes the model.
type LayerInfo struct {
	Layer  int    // decoder layer index, 0-based
	Tensor string // Hugging Face tensor name, e.g. "model.layers.3.mlp.up_proj.weight"
	Part   string // "q_proj", ..., "down_proj"
	// Expert is the mixture-of-experts expert the tensor belongs to, -1 if none (and always
	// -1 from hosts before protocol version 2).
	Expert int
	// ModelType, Hidden, Intermediate and NumLayers describe the model.
	ModelType            string
	Hidden, Intermediate int
	NumLayers            int
	// Samples and Tokens count the calibration sequences and token rows behind the
	// statistics (metrics, refinements).
	Samples, Tokens int
	// Args are the host's --plugin-arg key=value pairs.
	Args map[string]string
}

// Float returns the argument name parsed as a float, or def when it is absent.
func (li LayerInfo) Float(name string, def float64) (float64, error) {
	return ArgFloat(li.Args, name, def)
}

// ArgFloat returns args[name] parsed as a float, or def when it is absent.
func ArgFloat(args map[string]string, name string, def float64) (float64, error) {
	v, ok := args[name]
	if !ok {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("argument %s=%q: not a number", name, v)
	}
	return f, nil
}

// Target says how much a pattern prunes.
type Target struct {
	// Sparsity is the fraction pruned for unstructured targets, in [0, 1).
	Sparsity float64
	// N:M, when M > 0: prune N of every M consecutive input columns of each row.
	N, M int
	// Group is "row" (each output row separately), "matrix" or "column".
	Group string
	// Variant selects Wanda's adaptive-alpha variant.
	Variant bool
}

// Arg documents one --plugin-arg key.
type Arg struct {
	Name, Help string
}

// MetricInfo describes a metric plugin.
type MetricInfo struct {
	Name        string // short name, e.g. "ria"
	Description string // one line
	// IgnoresStats is set by metrics that never read S (like magnitude); the host may then
	// skip collecting statistics and S is empty.
	IgnoresStats bool
	// Args are the accepted --plugin-arg keys; nil accepts any.
	Args []Arg
	// CheckArgs, if set, validates the arguments when the host connects.
	CheckArgs func(args map[string]string) error
}

// PatternInfo describes a pattern plugin.
type PatternInfo struct {
	Name        string
	Description string
	Args        []Arg
	CheckArgs   func(args map[string]string) error
}

// MetricFunc scores the weights w [out, in] given the statistics s [in].
type MetricFunc func(w, s Tensor, info LayerInfo) (Tensor, error)

// PatternFunc selects the weights to prune from scores [out, in].
type PatternFunc func(scores Tensor, t Target, info LayerInfo) (Mask, error)

// ServeMetric serves f as a metric plugin until the host disconnects, then exits. It speaks
// protocol versions 1 and 2, so hosts from before version 2 can use it too.
func ServeMetric(info MetricInfo, f MetricFunc) {
	if f == nil {
		panic("sdk: nil MetricFunc")
	}
	resp := infoResponse(info.Name, info.Description, pb.Kind_KIND_METRIC, info.Args)
	resp.NeedsStats = !info.IgnoresStats
	serve(resp, infoServer{check: info.CheckArgs}, func(s *wire.Stage) { s.Metric = &metricServer{f: f} })
}

// ServePattern serves f as a pattern plugin until the host disconnects, then exits. It speaks
// protocol versions 1 and 2.
func ServePattern(info PatternInfo, f PatternFunc) {
	if f == nil {
		panic("sdk: nil PatternFunc")
	}
	resp := infoResponse(info.Name, info.Description, pb.Kind_KIND_PATTERN, info.Args)
	serve(resp, infoServer{check: info.CheckArgs}, func(s *wire.Stage) { s.Pattern = &patternServer{f: f} })
}

func infoResponse(name, desc string, kind pb.Kind, args []Arg) *pb.InfoResponse {
	if name == "" {
		panic("sdk: plugin without a name")
	}
	r := &pb.InfoResponse{Name: name, Kind: kind, Description: desc}
	for _, a := range args {
		r.Args = append(r.Args, &pb.ArgSpec{Name: a.Name, Help: a.Help})
	}
	if h := testhook.Hooks; h.InfoKind != 0 {
		r.Kind = pb.Kind(h.InfoKind)
	}
	return r
}

// serve serves the plugin described by resp: for every protocol version from the first one
// with its kind to wire.ProtocolVersion, a stage whose Info reports that version (base is
// copied with its resp set) and whose kind's service services adds. go-plugin picks the
// highest version the host offers.
func serve(resp *pb.InfoResponse, base infoServer, services func(*wire.Stage)) {
	stage := func(v uint) *wire.Stage {
		r := proto.Clone(resp).(*pb.InfoResponse)
		r.ProtocolVersion = uint32(v)
		if iv := testhook.Hooks.InfoProtocolVersion; iv != 0 {
			r.ProtocolVersion = iv
		}
		is := base
		is.resp = r
		s := &wire.Stage{Info: &is}
		services(s)
		return s
	}
	cfg := &plugin.ServeConfig{HandshakeConfig: wire.Handshake, GRPCServer: wire.NewGRPCServer}
	if v := testhook.Hooks.HandshakeVersion; v != 0 {
		// One version only, served as SDKs before protocol version 2 did: the handshake's
		// version with a plain plugin set, whatever the host offers.
		cfg.HandshakeConfig = wire.HandshakeFor(v)
		cfg.Plugins = wire.PluginSet(stage(v))
	} else {
		cfg.VersionedPlugins = map[int]plugin.PluginSet{}
		first := wire.KindVersion(resp.Kind)
		if first == 0 { // an unknown kind (test hook): offer every version
			first = wire.MinProtocolVersion
		}
		for v := first; v <= wire.ProtocolVersion; v++ {
			cfg.VersionedPlugins[int(v)] = wire.PluginSet(stage(v))
		}
	}
	if os.Getenv(cfg.MagicCookieKey) != cfg.MagicCookieValue {
		name := filepath.Base(os.Args[0])
		fmt.Fprintf(os.Stderr, "%s is a wanda plugin (protocol version %d): wanda starts it itself.\n"+
			"Put it in a --plugin-dir (or $WANDA_PLUGIN_DIR) and see `wanda plugins list`.\n",
			name, wire.ProtocolVersion)
		os.Exit(2)
	}
	go exitWithParent()
	plugin.Serve(cfg)
}

// exitWithParent ends the plugin when the host dies without stopping it (the process is then
// re-parented), so that no orphan is left behind.
func exitWithParent() {
	ppid := os.Getppid()
	if ppid <= 1 {
		return
	}
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() != ppid {
			os.Exit(3)
		}
	}
}

type infoServer struct {
	pb.UnimplementedPluginServer
	resp  *pb.InfoResponse
	check func(map[string]string) error
	// stats, for a refine plugin, gives the statistics it reads with these arguments.
	stats func(map[string]string) ([]Stat, error)
}

func (s *infoServer) Info(_ context.Context, req *pb.InfoRequest) (*pb.InfoResponse, error) {
	if s.check != nil {
		if err := s.check(req.Args); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if s.stats == nil {
		return s.resp, nil
	}
	need, err := s.stats(req.Args)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	r := proto.Clone(s.resp).(*pb.InfoResponse)
	for _, st := range need {
		k, err := st.msg()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if !slices.Contains(r.RefineStats, k) {
			r.RefineStats = append(r.RefineStats, k)
		}
	}
	return r, nil
}

func layerInfo(l *pb.LayerInfo, args map[string]string) LayerInfo {
	li := LayerInfo{Args: args}
	li.Expert = -1
	if l != nil {
		li.Layer, li.Tensor, li.Part = int(l.Layer), l.Tensor, l.Part
		li.ModelType, li.Hidden, li.Intermediate = l.ModelType, int(l.Hidden), int(l.Intermediate)
		li.NumLayers = int(l.NumLayers)
		if l.Expert != nil {
			li.Expert = int(*l.Expert)
		}
	}
	if li.Args == nil {
		li.Args = map[string]string{}
	}
	return li
}

// call runs f, turning a panic into an error.
func call(f func() error) (err error) {
	// A write to a read-only input view faults; make that a panic we can report.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			Logger().Error("plugin function panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

func userError(err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}

func badRequest(err error) error { return status.Error(codes.InvalidArgument, err.Error()) }

func matrixShape(d *pb.TensorDesc, what string) (rows, cols int, err error) {
	if d == nil || len(d.Shape) != 2 {
		return 0, 0, fmt.Errorf("%s: want a 2-D tensor", what)
	}
	return int(d.Shape[0]), int(d.Shape[1]), nil
}

// resultDesc is the descriptor the reply carries: the request's, with the shape produced.
func resultDesc(req *pb.TensorDesc, shape []int) *pb.TensorDesc {
	d := &pb.TensorDesc{Path: req.Path, Offset: req.Offset, Dtype: req.Dtype}
	for _, n := range shape {
		d.Shape = append(d.Shape, uint64(max(n, 0)))
	}
	return d
}

func sameShape(shape []int, want []uint64) bool {
	if len(shape) != len(want) {
		return false
	}
	for i := range shape {
		if shape[i] < 0 || uint64(shape[i]) != want[i] {
			return false
		}
	}
	return true
}

func product(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

type metricServer struct {
	pb.UnimplementedMetricServer
	f MetricFunc
}

func (s *metricServer) Score(_ context.Context, req *pb.ScoreRequest) (*pb.ScoreResponse, error) {
	rows, cols, err := matrixShape(req.Weight, "weight")
	if err != nil {
		return nil, badRequest(err)
	}
	wr, err := shm.Open(req.Weight, pb.DType_DTYPE_F32, false)
	if err != nil {
		return nil, badRequest(fmt.Errorf("weight: %w", err))
	}
	defer wr.Close()
	var S Tensor
	if req.SumSq != nil {
		sr, err := shm.Open(req.SumSq, pb.DType_DTYPE_F32, false)
		if err != nil {
			return nil, badRequest(fmt.Errorf("sum_sq: %w", err))
		}
		defer sr.Close()
		S = Tensor{Shape: shm.Shape(req.SumSq.Shape), Data: sr.Float32()}
	}
	if req.Result == nil {
		return nil, badRequest(errors.New("missing result descriptor"))
	}
	out, err := shm.Open(req.Result, pb.DType_DTYPE_F32, true)
	if err != nil {
		return nil, badRequest(fmt.Errorf("result: %w", err))
	}
	defer out.Close()
	W := Tensor{Shape: []int{rows, cols}, Data: wr.Float32()}
	info := layerInfo(req.Layer, req.Args)
	info.Samples, info.Tokens = int(req.Samples), int(req.Tokens)

	var res Tensor
	if err := call(func() (err error) { res, err = s.f(W, S, info); return err }); err != nil {
		return nil, userError(err)
	}
	if len(res.Data) != product(res.Shape) {
		return nil, status.Errorf(codes.Internal, "plugin returned a tensor of shape %v with %d values", res.Shape, len(res.Data))
	}
	if sameShape(res.Shape, req.Result.Shape) && !testhook.Hooks.SkipWrite {
		copy(out.Float32(), res.Data)
	}
	return &pb.ScoreResponse{Result: resultDesc(req.Result, res.Shape)}, nil
}

type patternServer struct {
	pb.UnimplementedPatternServer
	f PatternFunc
}

func (s *patternServer) Select(_ context.Context, req *pb.SelectRequest) (*pb.SelectResponse, error) {
	rows, cols, err := matrixShape(req.Scores, "scores")
	if err != nil {
		return nil, badRequest(err)
	}
	sr, err := shm.Open(req.Scores, pb.DType_DTYPE_F32, false)
	if err != nil {
		return nil, badRequest(fmt.Errorf("scores: %w", err))
	}
	defer sr.Close()
	if req.Result == nil {
		return nil, badRequest(errors.New("missing result descriptor"))
	}
	out, err := shm.Open(req.Result, pb.DType_DTYPE_U8, true)
	if err != nil {
		return nil, badRequest(fmt.Errorf("result: %w", err))
	}
	defer out.Close()
	t, err := target(req.Target)
	if err != nil {
		return nil, badRequest(err)
	}
	scores := Tensor{Shape: []int{rows, cols}, Data: sr.Float32()}
	info := layerInfo(req.Layer, req.Args)

	var m Mask
	if err := call(func() (err error) { m, err = s.f(scores, t, info); return err }); err != nil {
		return nil, userError(err)
	}
	if len(m.Pruned) != product(m.Shape) {
		return nil, status.Errorf(codes.Internal, "plugin returned a mask of shape %v with %d values", m.Shape, len(m.Pruned))
	}
	if sameShape(m.Shape, req.Result.Shape) && !testhook.Hooks.SkipWrite {
		b := out.Bytes()
		for k, p := range m.Pruned {
			if p {
				b[k] = 1
			} else {
				b[k] = 0
			}
		}
	}
	return &pb.SelectResponse{Result: resultDesc(req.Result, m.Shape)}, nil
}

// target converts the request's target (the zero Target, row group, when absent).
func target(tg *pb.Target) (Target, error) {
	t := Target{Group: "row"}
	if tg == nil {
		return t, nil
	}
	t = Target{Sparsity: tg.Sparsity, N: int(tg.N), M: int(tg.M), Variant: tg.Variant}
	switch tg.Group {
	case pb.Group_GROUP_ROW, pb.Group_GROUP_UNSPECIFIED:
		t.Group = "row"
	case pb.Group_GROUP_MATRIX:
		t.Group = "matrix"
	case pb.Group_GROUP_COLUMN:
		t.Group = "column"
	default:
		return Target{}, fmt.Errorf("unknown group %v", tg.Group)
	}
	return t, nil
}

// Logger returns a logger writing to standard error in the JSON form the host reads (hclog's
// "@level"/"@message" keys), so the host logs the plugin's records at their own levels.
func Logger() *slog.Logger { return logger }

var logger = slog.New(slog.NewJSONHandler(os.Stderr, loggerOptions))

var loggerOptions = &slog.HandlerOptions{
	Level: slog.LevelDebug,
	ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) > 0 {
			return a
		}
		switch a.Key {
		case slog.TimeKey:
			a.Key = "@timestamp"
			a.Value = slog.StringValue(a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
		case slog.MessageKey:
			a.Key = "@message"
		case slog.LevelKey:
			a.Key = "@level"
			switch l := a.Value.Any().(slog.Level); {
			case l < slog.LevelInfo:
				a.Value = slog.StringValue("debug")
			case l < slog.LevelWarn:
				a.Value = slog.StringValue("info")
			case l < slog.LevelError:
				a.Value = slog.StringValue("warn")
			default:
				a.Value = slog.StringValue("error")
			}
		}
		return a
	},
}
