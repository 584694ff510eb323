// Command csi-registrar registers a CSI node plugin with the kubelet, the job of the upstream
// node-driver-registrar, which the Go module proxy here does not serve. The kubelet watches its
// plugin registry directory for sockets; on this one it asks GetInfo (the plugin's type, name,
// CSI endpoint and versions) and then reports with NotifyRegistrationStatus.
//
//	csi-registrar -driver csi.spiffe.io \
//	  -endpoint /var/lib/kubelet/plugins/csi.spiffe.io/csi.sock \
//	  -registry /registration
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type registrar struct {
	registerapi.UnimplementedRegistrationServer
	driver   string
	endpoint string
}

func (r registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.driver,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r registrar) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.PluginRegistered {
		log.Printf("the kubelet registered %s", r.driver)
	} else {
		log.Printf("the kubelet refused %s: %s", r.driver, s.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

func main() {
	driver := flag.String("driver", "", "the CSI driver's name, e.g. csi.spiffe.io (required)")
	endpoint := flag.String("endpoint", "", "the driver's CSI socket as the kubelet sees it (required)")
	registry := flag.String("registry", "/registration", "the kubelet's plugin registry directory, as mounted here")
	flag.Parse()
	if *driver == "" || *endpoint == "" {
		log.Fatal("-driver and -endpoint are required")
	}
	sock := filepath.Join(*registry, *driver+"-reg.sock")
	if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
		log.Fatalf("removing the old %s: %v", sock, err)
	}
	lis, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatalf("listening on %s: %v", sock, err)
	}
	server := grpc.NewServer()
	registerapi.RegisterRegistrationServer(server, registrar{driver: *driver, endpoint: *endpoint})
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
		<-stop
		server.GracefulStop()
	}()
	log.Printf("registering %s (endpoint %s) on %s", *driver, *endpoint, sock)
	if err := server.Serve(lis); err != nil {
		log.Fatal(err)
	}
	_ = os.Remove(sock)
}
