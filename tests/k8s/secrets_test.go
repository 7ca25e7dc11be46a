package k8s

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nodexsec/nodex/libs/identity"
)

// secretDir is where every service reads its credentials and keys.
const secretDir = "/run/secrets/nodex"

// secretFiles describes how a container's secretDir is filled: straight from a
// Secret volume, or by an init container that copies one.
type secretFiles struct {
	volume corev1.Volume     // the Secret volume
	init   *corev1.Container // the copying init container, nil if none
	from   string            // where init mounts the Secret
}

// secretSource finds the Secret behind secretDir in container c of pod.
func secretSource(pod *corev1.PodSpec, c corev1.Container) (secretFiles, error) {
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	var mounted *corev1.Volume
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == secretDir {
			v := volumes[vm.Name]
			mounted = &v
		}
	}
	switch {
	case mounted == nil:
		return secretFiles{}, fmt.Errorf("nothing mounted at %s", secretDir)
	case mounted.Secret != nil:
		return secretFiles{volume: *mounted}, nil
	case mounted.EmptyDir == nil:
		return secretFiles{}, fmt.Errorf("%s is neither a Secret nor an emptyDir", secretDir)
	}
	for i := range pod.InitContainers {
		ic := &pod.InitContainers[i]
		args := ic.Command
		to := flagValue(args, "--to")
		from := flagValue(args, "--from")
		if !slices.Contains(args, "install") || to == "" || from == "" {
			continue
		}
		for _, vm := range ic.VolumeMounts {
			if vm.MountPath == from && volumes[vm.Name].Secret != nil &&
				mountsAt(ic, mounted.Name, to) {
				return secretFiles{volume: volumes[vm.Name], init: ic, from: from}, nil
			}
		}
	}

	return secretFiles{}, fmt.Errorf("no init container copies a Secret into emptyDir %s",
		mounted.Name)
}

func mountsAt(c *corev1.Container, volume, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.Name == volume && vm.MountPath == path && !vm.ReadOnly {
			return true
		}
	}

	return false
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}

	return ""
}

// runAs returns the uid and gid container c runs as: its own setting, then
// the pod's. A container that sets neither fails the check, because the
// image's USER cannot be read from the manifests.
func runAs(pod *corev1.PodSpec, c *corev1.Container) (uid, gid int64, err error) {
	uid, gid = -1, -1
	if s := pod.SecurityContext; s != nil {
		if s.RunAsUser != nil {
			uid = *s.RunAsUser
		}
		if s.RunAsGroup != nil {
			gid = *s.RunAsGroup
		}
	}
	if s := c.SecurityContext; s != nil {
		if s.RunAsUser != nil {
			uid = *s.RunAsUser
		}
		if s.RunAsGroup != nil {
			gid = *s.RunAsGroup
		}
	}
	if uid < 0 {
		return 0, 0, fmt.Errorf("container %s sets no runAsUser", c.Name)
	}
	if gid < 0 {
		gid = uid
	}

	return uid, gid, nil
}

// kubeletFile is the owner, group and mode that the kubelet gives a file
// of a Secret volume: root owns it; with a pod fsGroup the group is the
// fsGroup and group read is added to the mode (the kubelet ORs 0440 into
// every file of a read-only volume it sets ownership on).
type kubeletFile struct {
	uid, gid int64
	mode     fs.FileMode
}

func secretFileMode(pod *corev1.PodSpec, v corev1.Volume) kubeletFile {
	mode := fs.FileMode(0o644) // the API's default for defaultMode
	if v.Secret.DefaultMode != nil {
		mode = fs.FileMode(*v.Secret.DefaultMode)
	}
	f := kubeletFile{mode: mode}
	if s := pod.SecurityContext; s != nil && s.FSGroup != nil {
		f.gid = *s.FSGroup
		f.mode |= 0o440
	}

	return f
}

// canRead reports whether a process with uid, primary group gid and the
// pod's fsGroup as supplementary group may read f.
func canRead(pod *corev1.PodSpec, uid, gid int64, f kubeletFile) bool {
	groups := []int64{gid}
	if s := pod.SecurityContext; s != nil && s.FSGroup != nil {
		groups = append(groups, *s.FSGroup)
	}
	switch {
	case uid == 0 || uid == f.uid:
		return uid == 0 || f.mode&0o400 != 0
	case slices.Contains(groups, f.gid):
		return f.mode&0o040 != 0
	}

	return f.mode&0o004 != 0
}

// TestSecretFilesOwnedByService checks, for every Deployment, that the
// files its service reads under /run/secrets/nodex are mode 0600 or 0400
// and owned by the service's uid, which the credentials loader requires.
// Files taken straight from a Secret volume are judged by the kubelet's
// rules. Files an init container copies are produced for real: the
// Secret's files are laid out as the kubelet writes them (with the
// resulting mode), the init container's nodex command runs on them, and
// the copies must load with identity.LoadCreds.
func TestSecretFilesOwnedByService(t *testing.T) {
	m := load(t)
	for _, d := range m.deployments {
		pod := &d.Spec.Template.Spec
		for i := range pod.Containers {
			c := &pod.Containers[i]
			t.Run(d.Name+"/"+c.Name, func(t *testing.T) {
				checkServiceSecrets(t, m, pod, c)
			})
		}
	}
}

func checkServiceSecrets(t *testing.T, m *manifests, pod *corev1.PodSpec, c *corev1.Container) {
	uid, _, err := runAs(pod, c)
	if err != nil {
		t.Fatal(err)
	}
	src, err := secretSource(pod, *c)
	if err != nil {
		t.Fatal(err)
	}
	kubelet := secretFileMode(pod, src.volume)
	if src.init == nil {
		if kubelet.uid != uid && uid != 0 {
			t.Errorf("Secret files belong to uid %d, the service runs as uid %d",
				kubelet.uid, uid)
		}
		if kubelet.mode&0o077 != 0 {
			t.Errorf("Secret files have mode %04o, which the credentials loader rejects",
				kubelet.mode)
		}
		return
	}

	initUID, initGID, err := runAs(pod, src.init)
	if err != nil {
		t.Fatal(err)
	}
	if initUID != uid {
		t.Errorf("init container %s runs as uid %d, the service as uid %d: the copies "+
			"would belong to the wrong user", src.init.Name, initUID, uid)
	}
	if !canRead(pod, initUID, initGID, kubelet) {
		t.Errorf("init container %s (uid %d, gid %d) cannot read Secret files of uid %d, "+
			"gid %d, mode %04o", src.init.Name, initUID, initGID, kubelet.uid, kubelet.gid,
			kubelet.mode)
	}
	runInstall(t, m, src, kubelet)
}

// runInstall lays out the Secret as the kubelet does, runs the init
// container's command with the host's nodex binary, and checks the copies.
func runInstall(t *testing.T, m *manifests, src secretFiles, kubelet kubeletFile) {
	keys := m.secrets[src.volume.Secret.SecretName]
	if len(keys) == 0 {
		t.Fatalf("Secret %s has no files", src.volume.Secret.SecretName)
	}
	dir := t.TempDir()
	from, to := filepath.Join(dir, "secret"), filepath.Join(dir, "nodex")
	writeKubeletSecret(t, from, keys, kubelet.mode)

	nodex, err := filepath.Abs(filepath.Join("..", "..", "bin", "nodex"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(nodex); err != nil {
		t.Fatalf("%v: run make build first", err)
	}
	args := slices.Clone(src.init.Command[1:])
	for i, a := range args {
		switch {
		case a == src.from:
			args[i] = from
		case a == flagValue(src.init.Command, "--to"):
			args[i] = to
		}
	}
	cmd := exec.Command(nodex, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("running init container command %v: %v: %s", args, err, out)
	}

	for _, key := range keys {
		path := filepath.Join(to, key)
		st, err := os.Stat(path)
		if err != nil {
			t.Errorf("copy of %s: %v", key, err)
			continue
		}
		if mode := st.Mode().Perm(); mode != 0o400 && mode != 0o600 {
			t.Errorf("copy of %s has mode %04o, want 0400 or 0600", key, mode)
		}
		if owner := st.Sys().(*syscall.Stat_t).Uid; int(owner) != os.Getuid() {
			t.Errorf("copy of %s belongs to uid %d, want the installing uid %d",
				key, owner, os.Getuid())
		}
		if strings.HasSuffix(key, ".creds") {
			if _, err := identity.LoadCreds(path); err != nil {
				t.Errorf("loading the installed %s: %v", key, err)
			}
			if _, err := identity.LoadCreds(filepath.Join(from, key)); !errors.Is(err,
				identity.ErrCredsMode) {
				t.Errorf("loading %s straight from the Secret volume: got %v, want "+
					"the mode error that the copy avoids", key, err)
			}
		}
	}
}

// writeKubeletSecret writes keys the way the kubelet's atomic writer does:
// the files in a timestamped folder, a ..data link to it, and one link per
// key through ..data. Credentials get real content; other keys a
// placeholder.
func writeKubeletSecret(t *testing.T, dir string, keys []string, mode fs.FileMode) {
	t.Helper()
	stamp := filepath.Join(dir, "..2026_01_01_00_00_00.000000000")
	if err := os.MkdirAll(stamp, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := identity.NewSigner(identity.SignerRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		path := filepath.Join(stamp, key)
		if id, ok := strings.CutSuffix(key, ".creds"); ok {
			c, err := identity.NewCredentials(id, identity.KindService, root.Public())
			if err != nil {
				t.Fatal(err)
			}
			if err := identity.WriteCreds(path, c); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(path, []byte("placeholder\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", key), filepath.Join(dir, key)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(stamp), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}
