package wire

import (
	"context"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/wanda-go/wanda/plugins/proto"
)

// ProtocolVersion is the newest application protocol version, sent in the go-plugin
// handshake and reported again by Info. Version 2 added the allocation and refine kinds.
const ProtocolVersion = 2

// MinProtocolVersion is the oldest version the host still speaks (metric and pattern plugins
// built before version 2).
const MinProtocolVersion = 1

// KindVersion is the first protocol version with kind k (0 for an unknown kind).
func KindVersion(k pb.Kind) uint {
	switch k {
	case pb.Kind_KIND_METRIC, pb.Kind_KIND_PATTERN:
		return 1
	case pb.Kind_KIND_ALLOCATION, pb.Kind_KIND_REFINE:
		return 2
	}
	return 0
}

// MaxMsgSize bounds every gRPC message in both directions (tensors never travel in messages).
const MaxMsgSize = 4 << 20

// MaxSummary is the most numbers an allocation plugin may return for one layer.
const MaxSummary = 1024

// StageName is the single entry of the go-plugin plugin set.
const StageName = "stage"

// Handshake is the go-plugin handshake of the newest protocol version.
var Handshake = HandshakeFor(ProtocolVersion)

// HandshakeFor returns the handshake announcing application protocol version v.
func HandshakeFor(v uint) plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  v,
		MagicCookieKey:   "WANDA_PLUGIN_MAGIC_COOKIE",
		MagicCookieValue: "7d1f3a9c5e0b4286a1c3e5f70b2d4968",
	}
}

// ServerOptions are the gRPC options of the plugin's server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMsgSize), grpc.MaxSendMsgSize(MaxMsgSize)}
}

// DialOptions are the gRPC options of the host's connection.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(MaxMsgSize), grpc.MaxCallSendMsgSize(MaxMsgSize))}
}

// NewGRPCServer builds the plugin's gRPC server with the size limits (for plugin.ServeConfig).
func NewGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, ServerOptions()...)...)
}

// Clients are the host's stubs for the services of one plugin connection.
type Clients struct {
	Plugin     pb.PluginClient
	Metric     pb.MetricClient
	Pattern    pb.PatternClient
	Allocation pb.AllocationClient
	Refine     pb.RefineClient
}

// Stage is the go-plugin plugin of both sides. The host uses the zero value (its GRPCClient
// returns *Clients); a plugin sets Info and one of Metric, Pattern, Allocation or Refine.
type Stage struct {
	plugin.NetRPCUnsupportedPlugin
	Info       pb.PluginServer
	Metric     pb.MetricServer
	Pattern    pb.PatternServer
	Allocation pb.AllocationServer
	Refine     pb.RefineServer
}

var _ plugin.GRPCPlugin = (*Stage)(nil)

// GRPCServer registers the plugin's services.
func (s *Stage) GRPCServer(_ *plugin.GRPCBroker, srv *grpc.Server) error {
	pb.RegisterPluginServer(srv, s.Info)
	if s.Metric != nil {
		pb.RegisterMetricServer(srv, s.Metric)
	}
	if s.Pattern != nil {
		pb.RegisterPatternServer(srv, s.Pattern)
	}
	if s.Allocation != nil {
		pb.RegisterAllocationServer(srv, s.Allocation)
	}
	if s.Refine != nil {
		pb.RegisterRefineServer(srv, s.Refine)
	}
	return nil
}

// GRPCClient returns *Clients for conn.
func (s *Stage) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &Clients{
		Plugin:     pb.NewPluginClient(conn),
		Metric:     pb.NewMetricClient(conn),
		Pattern:    pb.NewPatternClient(conn),
		Allocation: pb.NewAllocationClient(conn),
		Refine:     pb.NewRefineClient(conn),
	}, nil
}

// PluginSet returns the go-plugin plugin set for s.
func PluginSet(s *Stage) plugin.PluginSet { return plugin.PluginSet{StageName: s} }

// HostPlugins is the host's go-plugin VersionedPlugins for the given versions (every
// version from MinProtocolVersion to ProtocolVersion when none are given).
func HostPlugins(versions ...int) map[int]plugin.PluginSet {
	if len(versions) == 0 {
		for v := MinProtocolVersion; v <= ProtocolVersion; v++ {
			versions = append(versions, v)
		}
	}
	m := make(map[int]plugin.PluginSet, len(versions))
	for _, v := range versions {
		m[v] = PluginSet(&Stage{})
	}
	return m
}
