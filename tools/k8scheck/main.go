// k8scheck is an offline schema check for Kubernetes manifests: every document is decoded strictly
// (unknown or duplicate fields, wrong types and malformed quantities are errors) into the typed
// structs of k8s.io/api — the Go types the API server itself decodes into — and the cross-object
// rules a schema cannot express are checked: selectors match pod labels, Services and probes name
// ports the containers declare, referenced ConfigMaps/Secrets exist, requests stay within limits.
//
// Usage: k8scheck FILE...   (prints one line per object; exit 1 with every problem on stderr)
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The kinds the manifests may use; anything else is an error rather than an unchecked document.
var kinds = map[string]func() any{
	"v1/Namespace":                           func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                              func() any { return &corev1.Secret{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                      func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                    func() any { return &appsv1.StatefulSet{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
}

type workload struct {
	name   string
	labels labels.Set
	pod    corev1.PodSpec
}

// A ConfigMap or Secret a pod takes its environment or files from; checked once every file is read.
type reference struct{ where, how, kind, name string }

type manifests struct {
	refs       []reference
	problems   []string
	workloads  []workload
	configMaps map[string]bool
	secrets    map[string]bool
	services   map[string]bool
	pdbs       []*policyv1.PodDisruptionBudget
	svcs       []*corev1.Service
	sets       []*appsv1.StatefulSet
	hpas       []*autoscalingv2.HorizontalPodAutoscaler
}

func (m *manifests) addf(format string, args ...any) {
	m.problems = append(m.problems, fmt.Sprintf(format, args...))
}

func (m *manifests) fieldErrors(where string, errs field.ErrorList) {
	for _, err := range errs {
		m.addf("%s: %v", where, err)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: k8scheck FILE...")
		os.Exit(2)
	}
	m := &manifests{configMaps: map[string]bool{}, secrets: map[string]bool{}, services: map[string]bool{}}
	count := 0
	for _, path := range os.Args[1:] {
		count += m.readFile(path)
	}
	m.crossCheck()
	if len(m.problems) > 0 {
		for _, problem := range m.problems {
			fmt.Fprintln(os.Stderr, problem)
		}
		os.Exit(1)
	}
	fmt.Printf("%d objects valid\n", count)
}

func (m *manifests) readFile(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		m.addf("%s: %v", path, err)
		return 0
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	count := 0
	for index := 0; ; index++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return count
		}
		if err != nil {
			m.addf("%s: document %d: %v", path, index, err)
			return count
		}
		if len(bytes.TrimSpace(doc)) == 0 || isOnlyComments(doc) {
			continue
		}
		if m.decode(fmt.Sprintf("%s: document %d", path, index), doc) {
			count++
		}
	}
}

func isOnlyComments(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}

func (m *manifests) decode(where string, doc []byte) bool {
	var head metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &head); err != nil {
		m.addf("%s: %v", where, err)
		return false
	}
	makeObject, known := kinds[head.APIVersion+"/"+head.Kind]
	if !known {
		m.addf("%s: unsupported apiVersion/kind %q/%q", where, head.APIVersion, head.Kind)
		return false
	}
	object := makeObject()
	// What the API server does: YAML to JSON, then a case-sensitive strict decode (encoding/json
	// would accept "readinessprobe" for readinessProbe).
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		m.addf("%s (%s): %v", where, head.Kind, err)
		return false
	}
	strict, err := sigsjson.UnmarshalStrict(data, object, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		m.addf("%s (%s): %v", where, head.Kind, err)
		return false
	}
	for _, problem := range strict {
		m.addf("%s (%s): %v", where, head.Kind, problem)
	}
	if len(strict) > 0 {
		return false
	}
	m.check(where, object)
	return true
}

func (m *manifests) meta(where string, meta *metav1.ObjectMeta, namespaced bool, nameFn apivalidation.ValidateNameFunc) string {
	m.fieldErrors(where, apivalidation.ValidateObjectMeta(meta, namespaced, nameFn, field.NewPath("metadata")))
	return meta.Name
}

func (m *manifests) check(where string, object any) {
	switch o := object.(type) {
	case *corev1.Namespace:
		fmt.Printf("Namespace/%s\n", m.meta(where, &o.ObjectMeta, false, apivalidation.NameIsDNSLabel))
	case *corev1.ConfigMap:
		m.configMaps[m.meta(where, &o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)] = true
		fmt.Printf("ConfigMap/%s\n", o.Name)
	case *corev1.Secret:
		m.secrets[m.meta(where, &o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)] = true
		fmt.Printf("Secret/%s\n", o.Name)
	case *corev1.ServiceAccount:
		fmt.Printf("ServiceAccount/%s\n", m.meta(where, &o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain))
	case *corev1.Service:
		m.services[m.meta(where, &o.ObjectMeta, true, apivalidation.NameIsDNS1035Label)] = true
		m.svcs = append(m.svcs, o)
		fmt.Printf("Service/%s\n", o.Name)
	case *appsv1.Deployment:
		name := m.meta(where, &o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
		m.workload(where, "Deployment/"+name, o.Spec.Selector, o.Spec.Template)
		fmt.Printf("Deployment/%s\n", name)
	case *appsv1.StatefulSet:
		name := m.meta(where, &o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
		m.workload(where, "StatefulSet/"+name, o.Spec.Selector, o.Spec.Template)
		m.sets = append(m.sets, o)
		fmt.Printf("StatefulSet/%s\n", name)
	case *policyv1.PodDisruptionBudget:
		name := m.meta(where, &o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
		if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
			m.addf("%s: PodDisruptionBudget/%s needs exactly one of minAvailable and maxUnavailable", where, name)
		}
		m.pdbs = append(m.pdbs, o)
		fmt.Printf("PodDisruptionBudget/%s\n", name)
	case *autoscalingv2.HorizontalPodAutoscaler:
		name := m.meta(where, &o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
		if o.Spec.MinReplicas != nil && *o.Spec.MinReplicas > o.Spec.MaxReplicas {
			m.addf("%s: HorizontalPodAutoscaler/%s: minReplicas > maxReplicas", where, name)
		}
		m.hpas = append(m.hpas, o)
		fmt.Printf("HorizontalPodAutoscaler/%s\n", name)
	}
}

func (m *manifests) workload(where, name string, selector *metav1.LabelSelector, template corev1.PodTemplateSpec) {
	where = where + ": " + name
	if selector == nil {
		m.addf("%s: spec.selector is required", where)
		return
	}
	m.fieldErrors(where, metavalidation.ValidateLabelSelector(selector, metavalidation.LabelSelectorValidationOptions{}, field.NewPath("spec", "selector")))
	m.fieldErrors(where, metavalidation.ValidateLabels(template.Labels, field.NewPath("spec", "template", "metadata", "labels")))
	parsed, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil || parsed.Empty() || !parsed.Matches(labels.Set(template.Labels)) {
		m.addf("%s: spec.selector does not select the pod template's labels %v", where, template.Labels)
	}
	if len(template.Spec.Containers) == 0 {
		m.addf("%s: no containers", where)
	}
	volumes := map[string]bool{}
	for _, volume := range template.Spec.Volumes {
		volumes[volume.Name] = true
		if volume.Secret != nil {
			m.refs = append(m.refs, reference{where, "volume " + volume.Name, "Secret", volume.Secret.SecretName})
		}
		if volume.ConfigMap != nil {
			m.refs = append(m.refs, reference{where, "volume " + volume.Name, "ConfigMap", volume.ConfigMap.Name})
		}
	}
	for _, container := range template.Spec.Containers {
		m.container(where+": container "+container.Name, container)
		for _, mount := range container.VolumeMounts {
			if !volumes[mount.Name] {
				m.addf("%s: container %s mounts volume %q, which the pod does not define", where, container.Name, mount.Name)
			}
		}
	}
	m.workloads = append(m.workloads, workload{name: name, labels: template.Labels, pod: template.Spec})
}

func (m *manifests) container(where string, c corev1.Container) {
	if c.Name == "" || c.Image == "" {
		m.addf("%s: name and image are required", where)
	}
	ports := map[string]int32{}
	for _, port := range c.Ports {
		if port.Name != "" {
			ports[port.Name] = port.ContainerPort
		}
	}
	probes := map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe}
	for label, probe := range probes {
		if probe == nil {
			if label != "startupProbe" {
				m.addf("%s: %s is required for every Highway container", where, label)
			}
			continue
		}
		if probe.HTTPGet != nil && !portDeclared(probe.HTTPGet.Port, c.Ports) {
			m.addf("%s: %s port %s is not a port of the container", where, label, probe.HTTPGet.Port.String())
		}
	}
	for _, resource := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		request, hasRequest := c.Resources.Requests[resource]
		limit, hasLimit := c.Resources.Limits[resource]
		if !hasRequest {
			m.addf("%s: resources.requests.%s is required", where, resource)
		}
		if hasRequest && hasLimit && request.Cmp(limit) > 0 {
			m.addf("%s: resources.requests.%s %s exceeds the limit %s", where, resource, request.String(), limit.String())
		}
	}
	if _, hasMemoryLimit := c.Resources.Limits[corev1.ResourceMemory]; !hasMemoryLimit {
		m.addf("%s: resources.limits.memory is required", where)
	}
	for _, source := range c.EnvFrom {
		if source.ConfigMapRef != nil {
			m.refs = append(m.refs, reference{where, "envFrom", "ConfigMap", source.ConfigMapRef.Name})
		}
		if source.SecretRef != nil {
			m.refs = append(m.refs, reference{where, "envFrom", "Secret", source.SecretRef.Name})
		}
	}
	for _, env := range c.Env {
		if env.ValueFrom == nil {
			continue
		}
		if ref := env.ValueFrom.SecretKeyRef; ref != nil {
			m.refs = append(m.refs, reference{where, "env " + env.Name, "Secret", ref.Name})
		}
		if ref := env.ValueFrom.ConfigMapKeyRef; ref != nil {
			m.refs = append(m.refs, reference{where, "env " + env.Name, "ConfigMap", ref.Name})
		}
	}
}

func portDeclared(port intstr.IntOrString, ports []corev1.ContainerPort) bool {
	for _, declared := range ports {
		if (port.Type == intstr.String && port.StrVal == declared.Name) ||
			(port.Type == intstr.Int && port.IntVal == declared.ContainerPort) {
			return true
		}
	}
	return false
}

func (m *manifests) selected(selector labels.Selector) []workload {
	var found []workload
	for _, w := range m.workloads {
		if !selector.Empty() && selector.Matches(w.labels) {
			found = append(found, w)
		}
	}
	return found
}

func (m *manifests) crossCheck() {
	for _, ref := range m.refs {
		defined := map[string]map[string]bool{"ConfigMap": m.configMaps, "Secret": m.secrets}[ref.kind]
		if !defined[ref.name] {
			m.addf("%s: %s: %s %q is not defined", ref.where, ref.how, ref.kind, ref.name)
		}
	}
	for _, pdb := range m.pdbs {
		selector, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || len(m.selected(selector)) == 0 {
			m.addf("PodDisruptionBudget/%s selects no workload's pods", pdb.Name)
		}
	}
	for _, svc := range m.svcs {
		targets := m.selected(labels.SelectorFromSet(svc.Spec.Selector))
		if len(targets) == 0 {
			m.addf("Service/%s selects no workload's pods", svc.Name)
		}
		for _, port := range svc.Spec.Ports {
			target := port.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(port.Port)
			}
			for _, w := range targets {
				if !podDeclares(w.pod, target) {
					m.addf("Service/%s: targetPort %s is not a port of %s", svc.Name, target.String(), w.name)
				}
			}
		}
	}
	for _, set := range m.sets {
		if !m.services[set.Spec.ServiceName] {
			m.addf("StatefulSet/%s: serviceName %q is not a defined Service", set.Name, set.Spec.ServiceName)
		}
	}
	for _, hpa := range m.hpas {
		ref := hpa.Spec.ScaleTargetRef
		if !m.hasWorkload(ref.Kind + "/" + ref.Name) {
			m.addf("HorizontalPodAutoscaler/%s: scaleTargetRef %s/%s is not defined", hpa.Name, ref.Kind, ref.Name)
		}
	}
}

func (m *manifests) hasWorkload(name string) bool {
	for _, w := range m.workloads {
		if w.name == name {
			return true
		}
	}
	return false
}

func podDeclares(pod corev1.PodSpec, port intstr.IntOrString) bool {
	for _, c := range pod.Containers {
		if portDeclared(port, c.Ports) {
			return true
		}
	}
	return false
}
