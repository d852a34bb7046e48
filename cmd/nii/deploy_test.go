package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nii-uk/nii/node"
	"go.yaml.in/yaml/v3"
)

// These tests check the files under deploy/ without docker, systemd or a
// cluster: the YAML parses and hangs together, the ports match the node's
// defaults, and the shell scripts that create homes in a container or pod
// make homes the real nii accepts.

func repoFile(t *testing.T, parts ...string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(append([]string{"..", ".."}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// get walks nested maps by key.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func defaultPort(t *testing.T, hostport string) string {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeployCompose(t *testing.T) {
	docs := yamlDocs(t, repoFile(t, "deploy", "compose", "compose.yaml"))
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents", len(docs))
	}
	services, _ := docs[0]["services"].(map[string]any)
	volumes, _ := docs[0]["volumes"].(map[string]any)
	if len(services) != 5 {
		t.Fatalf("compose services: %v", services)
	}
	for name, s := range services {
		cmd := strs(get(s, "command"))
		if get(s, "image") != "nii:local" || get(s, "build", "dockerfile") != "deploy/docker/Dockerfile" {
			t.Errorf("%s: image %v build %v (merge key not applied?)", name, get(s, "image"), get(s, "build"))
		}
		if get(s, "environment", "NII_ORG") != name || get(s, "environment", "NII_FEDERATION") != "london" {
			t.Errorf("%s: environment %v", name, get(s, "environment"))
		}
		if name == "registry" {
			if !slices.Contains(cmd, "--registry-only") {
				t.Errorf("registry command %v", cmd)
			}
		} else if i := slices.Index(cmd, "--join"); i < 0 || cmd[i+1] != "registry:"+defaultPort(t, node.DefaultGossip) {
			t.Errorf("%s command %v: want --join registry:7946", name, cmd)
		}
		vol := strs(get(s, "volumes"))
		if len(vol) != 1 || vol[0] != name+":/var/lib/nii" {
			t.Errorf("%s volumes %v", name, vol)
		}
		if _, ok := volumes[name]; !ok {
			t.Errorf("volume %s not declared", name)
		}
		if !slices.Contains(cmd, "0.0.0.0:"+defaultPort(t, node.DefaultAPI)) {
			t.Errorf("%s: API not on 0.0.0.0:7947: %v", name, cmd)
		}
	}
	if _, err := os.Stat(repoFile(t, "deploy", "docker", "Dockerfile")); err != nil {
		t.Fatal(err)
	}
}

func TestDeployKubernetes(t *testing.T) {
	dir := repoFile(t, "deploy", "k8s")
	kust := yamlDocs(t, filepath.Join(dir, "kustomization.yaml"))
	kinds := map[string][]map[string]any{}
	for _, f := range strs(kust[0]["resources"]) {
		for _, d := range yamlDocs(t, filepath.Join(dir, f)) {
			if d["apiVersion"] == nil || get(d, "metadata", "name") == nil {
				t.Errorf("%s: a document without apiVersion or metadata.name", f)
			}
			k, _ := d["kind"].(string)
			kinds[k] = append(kinds[k], d)
		}
	}
	if len(kinds["StatefulSet"]) != 1 || len(kinds["ConfigMap"]) != 1 || len(kinds["Service"]) != 2 {
		t.Fatalf("kinds: StatefulSet %d, ConfigMap %d, Service %d", len(kinds["StatefulSet"]), len(kinds["ConfigMap"]), len(kinds["Service"]))
	}
	sts, cm := kinds["StatefulSet"][0], kinds["ConfigMap"][0]
	var headless map[string]any
	for _, s := range kinds["Service"] {
		if get(s, "spec", "clusterIP") == "None" {
			headless = s
		}
	}
	if headless == nil || get(sts, "spec", "serviceName") != get(headless, "metadata", "name") || get(headless, "spec", "publishNotReadyAddresses") != true {
		t.Fatalf("the StatefulSet's serviceName %v is not a headless Service publishing unready pods", get(sts, "spec", "serviceName"))
	}
	labels := get(sts, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range get(headless, "spec", "selector").(map[string]any) {
		if labels[k] != v {
			t.Errorf("headless selector %s=%v does not match the pod labels %v", k, v, labels)
		}
	}
	if n, _ := get(sts, "spec", "replicas").(int); n != len(strings.Fields(get(cm, "data", "orgs").(string))) {
		t.Errorf("%d replicas but orgs %q", n, get(cm, "data", "orgs"))
	}
	if vct, _ := get(sts, "spec", "volumeClaimTemplates").([]any); len(vct) != 1 {
		t.Errorf("volumeClaimTemplates: %v", vct)
	}
	main := get(sts, "spec", "template", "spec", "containers").([]any)[0]
	if cmd := strs(get(main, "command")); !slices.Contains(cmd, "run") || cmd[slices.Index(cmd, "--home")+1] != "/var/lib/nii/home" {
		t.Errorf("container command %v", cmd)
	}
	if get(sts, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
		t.Error("pods may run as root")
	}
}

// TestDeployKubernetesHomeInit runs the ConfigMap's home-init.sh, as the
// init container would, for the registry pod and a borough pod, twice, and
// loads the homes it makes with the node's own config loader.
func TestDeployKubernetesHomeInit(t *testing.T) {
	var cm map[string]any
	for _, d := range yamlDocs(t, repoFile(t, "deploy", "k8s", "configmap.yaml")) {
		cm = d
	}
	dir := t.TempDir()
	script, tmpl := filepath.Join(dir, "home-init.sh"), filepath.Join(dir, "config.toml")
	os.WriteFile(script, []byte(get(cm, "data", "home-init.sh").(string)), 0o755)
	os.WriteFile(tmpl, []byte(get(cm, "data", "config.toml").(string)), 0o644)
	orgs := strings.Fields(get(cm, "data", "orgs").(string))

	for ordinal, wantOrg := range orgs[:2] {
		home := filepath.Join(dir, wantOrg, "home")
		os.MkdirAll(filepath.Dir(home), 0o755)
		var key []byte
		for range 2 { // first start, then a restart
			cmd := exec.Command("sh", script)
			cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(niiBin)+":"+os.Getenv("PATH"),
				"POD_NAME=nii-"+strconv.Itoa(ordinal), "POD_NAMESPACE=boroughs", "POD_IP=10.1.2.3",
				"NII_ORGS="+strings.Join(orgs, " "), "NII_HOME="+home, "NII_CONFIG_TEMPLATE="+tmpl)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("home-init.sh for nii-%d: %v\n%s", ordinal, err, out)
			}
			k, err := os.ReadFile(filepath.Join(home, node.KeyFile))
			if err != nil || (key != nil && !bytes.Equal(k, key)) {
				t.Fatalf("nii-%d: node key missing or replaced on restart: %v", ordinal, err)
			}
			key = k
		}
		cfg, err := node.LoadConfig(home)
		if err != nil {
			t.Fatalf("nii-%d: the rendered config does not load: %v", ordinal, err)
		}
		if cfg.Org != wantOrg || cfg.RegistryOnly != (ordinal == 0) || cfg.API != "0.0.0.0:7947" ||
			cfg.Gossip.Advertise != "10.1.2.3:7946" || cfg.Federation != "london" {
			t.Errorf("nii-%d config: %+v", ordinal, cfg)
		}
		wantJoin := []string{"nii-0.nii.boroughs.svc.cluster.local:7946"}
		if ordinal == 0 {
			wantJoin = nil
		}
		if !slices.Equal(cfg.Gossip.Join, wantJoin) {
			t.Errorf("nii-%d joins %v, want %v", ordinal, cfg.Gossip.Join, wantJoin)
		}
	}
	// A pod beyond the orgs list fails with a message.
	cmd := exec.Command("sh", script)
	cmd.Env = append(os.Environ(), "POD_NAME=nii-9", "POD_NAMESPACE=x", "POD_IP=10.0.0.1", "NII_ORGS="+strings.Join(orgs, " "),
		"NII_HOME="+filepath.Join(dir, "nine"), "NII_CONFIG_TEMPLATE="+tmpl)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no org") {
		t.Errorf("nii-9 with %d orgs: %v %s", len(orgs), err, out)
	}
}

// TestDeployDockerEntrypoint runs the image's entrypoint as a first and a
// second container start would.
func TestDeployDockerEntrypoint(t *testing.T) {
	home := filepath.Join(t.TempDir(), "nii")
	for range 2 {
		cmd := exec.Command("sh", repoFile(t, "deploy", "docker", "entrypoint.sh"), "version")
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(niiBin)+":"+os.Getenv("PATH"), "NII_HOME="+home,
			"NII_ORG=greenwich", "NII_ORG_NAME=Royal Borough of Greenwich", "NII_FEDERATION=london")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "nii ") {
			t.Fatalf("entrypoint: %v\n%s", err, out)
		}
	}
	cfg, err := node.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Org != "greenwich" || cfg.OrgName != "Royal Borough of Greenwich" || cfg.Federation != "london" || cfg.API != "0.0.0.0:7947" {
		t.Fatalf("config made by the entrypoint: %+v", cfg)
	}
}

// TestDeployDockerfileAndUnit checks what can be checked of the Dockerfile
// and the systemd unit without docker or systemd.
func TestDeployDockerfileAndUnit(t *testing.T) {
	b, err := os.ReadFile(repoFile(t, "deploy", "docker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms, exposed []string
	var user string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "FROM":
			froms = append(froms, sc.Text())
		case "EXPOSE":
			exposed = append(exposed, f[1:]...)
		case "USER":
			user = f[1]
		case "COPY":
			if !strings.HasPrefix(f[1], "--from") {
				for _, src := range f[1 : len(f)-1] {
					if _, err := os.Stat(repoFile(t, src)); err != nil {
						t.Errorf("COPY %s: %v", src, err)
					}
				}
			}
		}
	}
	if len(froms) != 2 || !strings.Contains(froms[0], " AS build") || !bytes.Contains(b, []byte("CGO_ENABLED=0")) {
		t.Errorf("want a two-stage static build: %q", froms)
	}
	if user == "" || strings.HasPrefix(user, "0") || user == "root" {
		t.Errorf("USER %q: the image must not run as root", user)
	}
	g, a, p := defaultPort(t, node.DefaultGossip), defaultPort(t, node.DefaultAPI), strings.Split(node.DefaultP2P[0], "/")[4]
	for _, want := range []string{g + "/tcp", g + "/udp", a + "/tcp", p + "/tcp", p + "/udp"} {
		if !slices.Contains(exposed, want) {
			t.Errorf("EXPOSE %v lacks %s", exposed, want)
		}
	}

	unit, err := os.ReadFile(repoFile(t, "deploy", "systemd", "nii.service"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(unit), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("nii.service: not a key=value line: %q", line)
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	for k, v := range map[string]string{
		"Service.ExecStart":       "/usr/local/bin/nii run --home /var/lib/nii",
		"Service.StateDirectory":  "nii",
		"Service.DynamicUser":     "yes",
		"Service.ProtectSystem":   "strict",
		"Service.NoNewPrivileges": "yes",
		"Install.WantedBy":        "multi-user.target",
	} {
		if !slices.Contains(keys[k], v) {
			t.Errorf("nii.service: %s = %v, want %s", k, keys[k], v)
		}
	}
}
