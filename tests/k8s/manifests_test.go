// Package k8s checks the Kustomize manifests under deploy/k8s: every object
// decodes strictly into its Kubernetes API type, and the names that objects
// use to refer to each other (Secrets, Services, labels and selectors)
// resolve inside the set.
package k8s

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const manifestDir = "../../deploy/k8s"

// kustomization is the part of kustomization.yaml the checks read.
type kustomization struct {
	metav1.TypeMeta `json:",inline"`
	// GeneratorOptions is decoded so that strict decoding accepts it.
	GeneratorOptions struct {
		DisableNameSuffixHash bool `json:"disableNameSuffixHash"`
	} `json:"generatorOptions"`
	Namespace       string   `json:"namespace"`
	Resources       []string `json:"resources"`
	SecretGenerator []struct {
		Name  string   `json:"name"`
		Files []string `json:"files"`
	} `json:"secretGenerator"`
}

type manifests struct {
	kust         kustomization
	secrets      map[string][]string // name -> file keys
	services     map[string]*corev1.Service
	statefulSets []*appsv1.StatefulSet
	deployments  []*appsv1.Deployment
	policies     []*networkingv1.NetworkPolicy
	namespaces   []*corev1.Namespace
}

func load(t *testing.T) *manifests {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(manifestDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{secrets: map[string][]string{}, services: map[string]*corev1.Service{}}
	if err := yaml.UnmarshalStrict(data, &m.kust); err != nil {
		t.Fatalf("decoding kustomization.yaml: %v", err)
	}
	for _, g := range m.kust.SecretGenerator {
		for _, f := range g.Files {
			m.secrets[g.Name] = append(m.secrets[g.Name], filepath.Base(f))
		}
	}
	for _, res := range m.kust.Resources {
		data, err := os.ReadFile(filepath.Join(manifestDir, res))
		if err != nil {
			t.Fatalf("resource %s: %v", res, err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			m.decode(t, res, i, doc)
		}
	}

	return m
}

// decode decodes one YAML document strictly into the type its kind names.
func (m *manifests) decode(t *testing.T, file string, index int, doc []byte) {
	t.Helper()
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		t.Fatalf("%s document %d: %v", file, index, err)
	}
	if meta.Kind == "" {
		return
	}
	var target any
	switch meta.Kind {
	case "Service":
		s := &corev1.Service{}
		target = s
		defer func() { m.services[s.Name] = s }()
	case "StatefulSet":
		s := &appsv1.StatefulSet{}
		target = s
		defer func() { m.statefulSets = append(m.statefulSets, s) }()
	case "Deployment":
		d := &appsv1.Deployment{}
		target = d
		defer func() { m.deployments = append(m.deployments, d) }()
	case "NetworkPolicy":
		p := &networkingv1.NetworkPolicy{}
		target = p
		defer func() { m.policies = append(m.policies, p) }()
	case "Namespace":
		n := &corev1.Namespace{}
		target = n
		defer func() { m.namespaces = append(m.namespaces, n) }()
	default:
		t.Fatalf("%s document %d: unexpected kind %s", file, index, meta.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, target); err != nil {
		t.Fatalf("%s document %d (%s): %v", file, index, meta.Kind, err)
	}
}

// podTemplates returns every workload's name and pod template.
func (m *manifests) podTemplates() map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, s := range m.statefulSets {
		out[s.Name] = &s.Spec.Template
	}
	for _, d := range m.deployments {
		out[d.Name] = &d.Spec.Template
	}

	return out
}

func TestManifestsDecode(t *testing.T) {
	m := load(t)
	if len(m.statefulSets) != 1 {
		t.Errorf("StatefulSets = %d, want 1 (the brokers)", len(m.statefulSets))
	}
	if len(m.deployments) != 6 {
		t.Errorf("Deployments = %d, want one per service (6)", len(m.deployments))
	}
	if len(m.policies) == 0 {
		t.Error("no NetworkPolicy")
	}
	if len(m.namespaces) != 1 || m.namespaces[0].Name != m.kust.Namespace {
		t.Errorf("Namespace objects do not match kustomization namespace %q", m.kust.Namespace)
	}
}

func TestBrokerStatefulSet(t *testing.T) {
	m := load(t)
	s := m.statefulSets[0]
	if s.Spec.Replicas == nil || *s.Spec.Replicas != 3 {
		t.Errorf("broker replicas = %v, want 3", s.Spec.Replicas)
	}
	svc, ok := m.services[s.Spec.ServiceName]
	if !ok {
		t.Fatalf("serviceName %q names no Service", s.Spec.ServiceName)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service %s is not headless", svc.Name)
	}
	routes := ""
	for _, e := range s.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "NODEX_BROKER_ROUTES" {
			routes = e.Value
		}
	}
	for i := range 3 {
		host := s.Name + "-" + string(rune('0'+i)) + "." + svc.Name
		if !strings.Contains(routes, host+":6222") {
			t.Errorf("routes %q do not name pod %s", routes, host)
		}
	}
	if len(s.Spec.VolumeClaimTemplates) != 1 {
		t.Errorf("volumeClaimTemplates = %d, want 1", len(s.Spec.VolumeClaimTemplates))
	}
}

func TestSelectorsMatchTemplates(t *testing.T) {
	m := load(t)
	check := func(name string, sel *metav1.LabelSelector, tpl *corev1.PodTemplateSpec) {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Errorf("%s: selector: %v", name, err)
			return
		}
		if !s.Matches(labels.Set(tpl.Labels)) {
			t.Errorf("%s: selector %v does not match its template labels %v",
				name, sel.MatchLabels, tpl.Labels)
		}
	}
	for _, s := range m.statefulSets {
		check(s.Name, s.Spec.Selector, &s.Spec.Template)
	}
	for _, d := range m.deployments {
		check(d.Name, d.Spec.Selector, &d.Spec.Template)
	}
}

func TestServicesSelectPods(t *testing.T) {
	m := load(t)
	for name, svc := range m.services {
		found := false
		for _, tpl := range m.podTemplates() {
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(tpl.Labels)) {
				found = true
			}
		}
		if !found {
			t.Errorf("Service %s selects no pod template", name)
		}
	}
}

func TestSecretsAndFilesResolve(t *testing.T) {
	m := load(t)
	claims := map[string]bool{}
	for _, s := range m.statefulSets {
		for _, c := range s.Spec.VolumeClaimTemplates {
			claims[c.Name] = true
		}
	}
	for name, tpl := range m.podTemplates() {
		volumes := map[string]corev1.Volume{}
		for _, v := range tpl.Spec.Volumes {
			volumes[v.Name] = v
			if v.Secret != nil {
				if _, ok := m.secrets[v.Secret.SecretName]; !ok {
					t.Errorf("%s: volume %s uses Secret %q, which no generator makes",
						name, v.Name, v.Secret.SecretName)
				}
			}
		}
		for _, c := range tpl.Spec.Containers {
			for _, vm := range c.VolumeMounts {
				v, ok := volumes[vm.Name]
				if !ok && claims[vm.Name] {
					continue
				}
				if !ok {
					t.Errorf("%s/%s: mount of unknown volume %s", name, c.Name, vm.Name)
					continue
				}
				if vm.SubPath != "" && v.Secret != nil &&
					!contains(m.secrets[v.Secret.SecretName], vm.SubPath) {
					t.Errorf("%s/%s: subPath %s is not a key of Secret %s",
						name, c.Name, vm.SubPath, v.Secret.SecretName)
				}
			}
			checkEnvFiles(t, m, name, c, volumes)
		}
	}
}

// checkEnvFiles checks that environment values naming a file under
// /run/secrets/nodex name a key of the Secret whose files end up there,
// and that NATS_URL names a Service.
func checkEnvFiles(t *testing.T, m *manifests, name string, c corev1.Container,
	volumes map[string]corev1.Volume,
) {
	t.Helper()
	tpl := m.podTemplates()[name]
	secret := ""
	if src, err := secretSource(&tpl.Spec, c); err == nil {
		secret = src.volume.Secret.SecretName
	} else {
		t.Errorf("%s/%s: %v", name, c.Name, err)
	}
	for _, e := range c.Env {
		if rest, ok := strings.CutPrefix(e.Value, secretDir+"/"); ok {
			if !contains(m.secrets[secret], rest) {
				t.Errorf("%s: %s=%s is not a key of Secret %q", name, e.Name, e.Value, secret)
			}
		}
		if e.Name == "NATS_URL" {
			host := strings.Split(strings.TrimPrefix(e.Value, "tls://"), ":")[0]
			if _, ok := m.services[host]; !ok {
				t.Errorf("%s: NATS_URL %s names no Service", name, e.Value)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}

	return false
}

func TestPoliciesSelectPods(t *testing.T) {
	m := load(t)
	tpls := m.podTemplates()
	matchesSome := func(sel metav1.LabelSelector) bool {
		s, err := metav1.LabelSelectorAsSelector(&sel)
		if err != nil {
			return false
		}
		for _, tpl := range tpls {
			if s.Matches(labels.Set(tpl.Labels)) {
				return true
			}
		}

		return false
	}
	for _, p := range m.policies {
		if !matchesSome(p.Spec.PodSelector) {
			t.Errorf("NetworkPolicy %s selects no pod", p.Name)
		}
		for _, in := range p.Spec.Ingress {
			for _, from := range in.From {
				if from.PodSelector != nil && from.NamespaceSelector == nil &&
					!matchesSome(*from.PodSelector) {
					t.Errorf("NetworkPolicy %s: ingress peer selects no pod", p.Name)
				}
			}
			for _, port := range in.Ports {
				if v := port.Port.IntValue(); v != 4222 && v != 6222 {
					t.Errorf("NetworkPolicy %s allows port %d, not NATS", p.Name, v)
				}
			}
		}
	}
}

func TestSandboxRunnerSecurityContext(t *testing.T) {
	m := load(t)
	tpl, ok := m.podTemplates()["nodex-sandbox-runner"]
	if !ok {
		t.Fatal("no nodex-sandbox-runner Deployment")
	}
	sc := tpl.Spec.Containers[0].SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("sandbox-runner has no capabilities set")
	}
	if !contains(capNames(sc.Capabilities.Drop), "ALL") {
		t.Error("sandbox-runner does not drop ALL capabilities")
	}
	added := capNames(sc.Capabilities.Add)
	if len(added) != 2 || !contains(added, "SETUID") || !contains(added, "SETGID") {
		t.Errorf("sandbox-runner adds %v, want exactly SETUID and SETGID", added)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("sandbox-runner is privileged")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeLocalhost {
		t.Error("sandbox-runner does not use the shipped seccomp profile")
	}
	if _, err := os.Stat(filepath.Join(manifestDir, "..", "seccomp", "sandbox-runner.json")); err != nil {
		t.Errorf("shipped seccomp profile: %v", err)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("sandbox-runner allows privilege escalation")
	}
}

func capNames(caps []corev1.Capability) []string {
	var out []string
	for _, c := range caps {
		out = append(out, string(c))
	}

	return out
}
