package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const examples = "../../deploy/examples/"

// applyObjects creates the manifest's objects in ns, after edit has adjusted each.
func applyObjects(t *testing.T, ns string, objs []runtime.Object) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, obj := range objs {
		var err error
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			_, err = cl.cs.CoreV1().ConfigMaps(ns).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Pod:
			_, err = cl.cs.CoreV1().Pods(ns).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			_, err = cl.cs.AppsV1().Deployments(ns).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("no create for %T", obj)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// queueOp calls the example queue's CGI script at its pod IP.
func queueOp(ctx context.Context, ip, op string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:8080/cgi-bin/q?%s", ip, op), nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", op, resp.Status)
	}
	return strings.TrimSpace(string(body)), err
}

func queueDone(ctx context.Context, ip string) (int, error) {
	s, err := queueOp(ctx, ip, "stats")
	if err != nil {
		return 0, err
	}
	var todo, taken, done int
	if _, err := fmt.Sscanf(s, "todo %d taken %d done %d", &todo, &taken, &done); err != nil {
		return 0, fmt.Errorf("stats %q: %w", s, err)
	}
	return done, nil
}

// The queue-task pool of deploy/examples/queue-task-pool: N workers, one 50 ms task per pod restart, for
// each restart path; reports tasks/s.
func TestExampleQueueTaskPool(t *testing.T) {
	ensureRuntimeClass(t)
	ns := newNamespace(t)
	applyObjects(t, ns, decodeManifest(t, examples+"queue-task-pool/queue.yaml"))
	q := waitPod(t, ns, "queue", 2*time.Minute, podReady)
	ip := q.Status.PodIP
	for _, tc := range []struct {
		path     restartPath
		manifest string
		perTask  int // tasks per worker of a measurement
	}{
		{kubeletPath, "workers.yaml", 8},
		{warmpodPath, "workers-warmpod-rules.yaml", 40},
	} {
		for _, n := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s-rules-%d-workers", tc.path, n), func(t *testing.T) {
				objs := decodeManifest(t, examples+"queue-task-pool/"+tc.manifest)
				d := objs[0].(*appsv1.Deployment)
				replicas := int32(n)
				d.Spec.Replicas = &replicas
				env := d.Spec.Template.Spec.Containers[0].Env
				for i := range env {
					env[i].Value = strings.ReplaceAll(env[i].Value, "QUEUE_POD_IP", ip)
				}
				applyObjects(t, ns, objs)
				defer deleteWorkers(t, ns)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				if err := cl.poll(ctx, cl.kubelet, 3*time.Minute, func() error {
					dep, err := cl.cs.AppsV1().Deployments(ns).Get(ctx, "worker", metav1.GetOptions{})
					if err != nil {
						return err
					}
					if dep.Status.ReadyReplicas < replicas {
						return fmt.Errorf("%d of %d workers ready", dep.Status.ReadyReplicas, replicas)
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				before, err := queueDone(ctx, ip)
				if err != nil {
					t.Fatal(err)
				}
				tasks := tc.perTask * n
				start := time.Now()
				if _, err := queueOp(ctx, ip, fmt.Sprintf("add=%d", tasks)); err != nil {
					t.Fatal(err)
				}
				if err := cl.poll(ctx, cl.kubelet, 8*time.Minute, func() error {
					done, err := queueDone(ctx, ip)
					if err != nil {
						return err
					}
					if done-before < tasks {
						return fmt.Errorf("%d of %d tasks done", done-before, tasks)
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				elapsed := time.Since(start)
				line := fmt.Sprintf("e2e throughput: queue-task pool, %s restart rules, %s PLEG, %d workers, 50 ms tasks: %d tasks in %s = %.2f tasks/s",
					tc.path, pleg(), n, tasks, elapsed.Round(time.Millisecond), float64(tasks)/elapsed.Seconds())
				t.Log(line)
				fmt.Println(line)
			})
		}
	}
}

func deleteWorkers(t *testing.T, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	zero := int64(0)
	fg := metav1.DeletePropagationForeground
	if err := cl.cs.AppsV1().Deployments(ns).Delete(ctx, "worker", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Error(err)
	}
	_ = cl.cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{LabelSelector: "app=worker"})
	if err := cl.poll(ctx, cl.kubelet, 2*time.Minute, func() error {
		pods, err := cl.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=worker"})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d workers left", len(pods.Items))
		}
		// Deleted in the foreground: the Deployment goes last, and the next one has its name.
		if _, err := cl.cs.AppsV1().Deployments(ns).Get(ctx, "worker", metav1.GetOptions{}); err == nil {
			return fmt.Errorf("deployment worker still there")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// The game session server of deploy/examples/game-session: a client plays K sessions in a row on the same
// host port; each session's end resets the pod. Reports the turnaround, from one session's end to the
// next session's first byte.
func TestExampleGameSession(t *testing.T) {
	ensureRuntimeClass(t)
	for _, tc := range []struct {
		path     restartPath
		manifest string
		sessions int
	}{
		{kubeletPath, "session.yaml", 6},
		{warmpodPath, "session-warmpod-rules.yaml", 20},
	} {
		t.Run(string(tc.path)+"-rules", func(t *testing.T) {
			ns := newNamespace(t)
			ports, err := freePorts(1)
			if err != nil {
				t.Fatal(err)
			}
			port := ports[0]
			objs := decodeManifest(t, examples+"game-session/"+tc.manifest)
			pod := objs[0].(*corev1.Pod)
			pod.Spec.Containers[0].Ports[0].HostPort = int32(port)
			applyObjects(t, ns, objs)
			p := waitPod(t, ns, "game", 2*time.Minute, podReady)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			var turnarounds []restartSample
			var lastEnd time.Time
			seen := map[string]bool{}
			for i := range tc.sessions {
				line, first, end, err := playSession(addr, 2*time.Minute)
				if err != nil {
					t.Fatalf("session %d: %v\npod: %s", i+1, err, podSummary(p))
				}
				if seen[line] {
					t.Errorf("session %d got the data of an earlier session: %q", i+1, line)
				}
				seen[line] = true
				if !strings.HasPrefix(line, fmt.Sprintf("session %d ", i+1)) {
					t.Errorf("session %d: the server sent %q: the init container did not prepare this session", i+1, line)
				}
				if i > 0 {
					turnarounds = append(turnarounds, restartSample{latency: first.Sub(lastEnd)})
				}
				lastEnd = end
			}
			got := waitPod(t, ns, "game", time.Minute, podReady)
			if got.UID != p.UID || got.Status.PodIP != p.Status.PodIP {
				t.Errorf("pod UID/IP changed across sessions")
			}
			p50, p90, worst := percentiles(turnarounds)
			line := fmt.Sprintf("e2e turnaround: game session, %s restart rules, %s PLEG: session end -> next session served over %d sessions: p50 %s p90 %s max %s",
				tc.path, pleg(), len(turnarounds), p50.Round(time.Microsecond), p90.Round(time.Microsecond), worst.Round(time.Microsecond))
			t.Log(line)
			fmt.Println(line)
		})
	}
}

// playSession connects until the server answers, reads its line, and reads until the server closes. It
// returns the line, when it arrived and when the session ended.
func playSession(addr string, timeout time.Duration) (line string, first, end time.Time, err error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		conn, derr := net.DialTimeout("tcp", addr, time.Second)
		if derr != nil {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		l, rerr := r.ReadString('\n')
		if rerr != nil {
			// Accepted by nothing yet (the port's DNAT to a server not listening), or closed at once.
			conn.Close()
			time.Sleep(2 * time.Millisecond)
			continue
		}
		first = time.Now()
		_, _ = io.Copy(io.Discard, r)
		end = time.Now()
		conn.Close()
		return strings.TrimSpace(l), first, end, nil
	}
	return "", first, end, fmt.Errorf("no session served at %s within %s", addr, timeout)
}
