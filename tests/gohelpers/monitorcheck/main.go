// Command monitorcheck decodes each prometheus-operator object (ServiceMonitor, PodMonitor, PrometheusRule)
// read as JSON on stdin into prometheus-operator's own Go types (github.com/prometheus-operator/
// prometheus-operator/pkg/apis/monitoring/v1), refusing unknown fields, as a stand-in for a server-side
// dry-run where the monitoring.coreos.com CRDs are not installed. One JSON line per object is written to
// stdout: {"kind", "name", "error"}; "error" is empty for an object that decodes.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

type result struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Error string `json:"error"`
}

func typed(kind string) (any, error) {
	switch kind {
	case monitoringv1.ServiceMonitorsKind:
		return &monitoringv1.ServiceMonitor{}, nil
	case monitoringv1.PodMonitorsKind:
		return &monitoringv1.PodMonitor{}, nil
	case monitoringv1.PrometheusRuleKind:
		return &monitoringv1.PrometheusRule{}, nil
	}
	return nil, fmt.Errorf("not a monitoring.coreos.com/v1 kind this helper knows: %q", kind)
}

func check(raw json.RawMessage) result {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return result{Error: err.Error()}
	}
	res := result{Kind: head.Kind, Name: head.Metadata.Name}
	if head.APIVersion != monitoringv1.SchemeGroupVersion.String() {
		res.Error = fmt.Sprintf("apiVersion %q, want %q", head.APIVersion, monitoringv1.SchemeGroupVersion)
		return res
	}
	obj, err := typed(head.Kind)
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		err = dec.Decode(obj)
	}
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

func main() {
	out := json.NewEncoder(os.Stdout)
	dec := json.NewDecoder(os.Stdin)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "monitorcheck: reading stdin:", err)
			os.Exit(2)
		}
		if err := out.Encode(check(raw)); err != nil {
			fmt.Fprintln(os.Stderr, "monitorcheck:", err)
			os.Exit(2)
		}
	}
}
