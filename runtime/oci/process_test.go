package oci

import (
	"errors"
	"slices"
	"testing"
)

func TestProcessArgs(t *testing.T) {
	img := &Image{Entrypoint: []string{"/entry", "-x"}, Cmd: []string{"serve", "--port=80"}}
	tests := []struct {
		name          string
		command, args []string
		img           *Image
		want          []string
		wantErr       bool
	}{
		{name: "image entrypoint and cmd", img: img, want: []string{"/entry", "-x", "serve", "--port=80"}},
		{name: "command replaces entrypoint and drops cmd", command: []string{"/bin/sh"}, img: img, want: []string{"/bin/sh"}},
		{name: "command and args", command: []string{"/bin/sh"}, args: []string{"-c", "true"}, img: img, want: []string{"/bin/sh", "-c", "true"}},
		{name: "args replace cmd only", args: []string{"worker"}, img: img, want: []string{"/entry", "-x", "worker"}},
		{name: "cmd without entrypoint", img: &Image{Cmd: []string{"sh"}}, want: []string{"sh"}},
		{name: "empty-string entrypoint means none", img: &Image{Entrypoint: []string{""}, Cmd: []string{"sh"}}, want: []string{"sh"}},
		{name: "args without any entrypoint", args: []string{"ls"}, img: &Image{Cmd: []string{"sh"}}, want: []string{"ls"}},
		{name: "nothing at all", img: &Image{}, wantErr: true},
		{name: "empty-string entrypoint and no cmd", img: &Image{Entrypoint: []string{""}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Container{Name: "app", Command: tt.command, Args: tt.args}
			got, err := processArgs(c, tt.img)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("err = %v, want ErrInvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("argv = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProcessArgsDoesNotAliasInputs(t *testing.T) {
	c := &Container{Name: "app", Command: make([]string, 1, 4)}
	c.Command[0] = "/bin/sh"
	got, err := processArgs(c, &Image{})
	if err != nil {
		t.Fatal(err)
	}
	got[0] = "changed"
	if c.Command[0] != "/bin/sh" {
		t.Fatal("processArgs returned the container's own slice")
	}
}

func TestProcessEnv(t *testing.T) {
	tests := []struct {
		name     string
		image    []string
		ctr      []string
		hostname string
		want     []string
		wantErr  bool
	}{
		{
			name: "defaults only", hostname: "web-0",
			want: []string{defaultPath, "HOSTNAME=web-0"},
		},
		{
			name: "image PATH replaces the default in place", hostname: "h",
			image: []string{"PATH=/bin", "LANG=C"},
			want:  []string{"PATH=/bin", "HOSTNAME=h", "LANG=C"},
		},
		{
			name: "container overrides image by key, keeping order", hostname: "h",
			image: []string{"A=1", "B=2"}, ctr: []string{"B=3", "C=4"},
			want: []string{defaultPath, "HOSTNAME=h", "A=1", "B=3", "C=4"},
		},
		{
			name: "later container entry wins", hostname: "h",
			ctr:  []string{"X=1", "X=2"},
			want: []string{defaultPath, "HOSTNAME=h", "X=2"},
		},
		{
			name: "container may set HOSTNAME", hostname: "h",
			ctr:  []string{"HOSTNAME=mine"},
			want: []string{defaultPath, "HOSTNAME=mine"},
		},
		{
			name: "empty value is a value", hostname: "h",
			ctr:  []string{"EMPTY="},
			want: []string{defaultPath, "HOSTNAME=h", "EMPTY="},
		},
		{name: "entry without =", ctr: []string{"NOVALUE"}, wantErr: true},
		{name: "entry without key", ctr: []string{"=v"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := processEnv(&Container{Env: tt.ctr}, &Image{Env: tt.image}, tt.hostname)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("err = %v, want ErrInvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("env = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProcessCwd(t *testing.T) {
	tests := []struct {
		name, ctr, image, want string
		wantErr                bool
	}{
		{name: "default is root", want: "/"},
		{name: "image", image: "/srv", want: "/srv"},
		{name: "container beats image", ctr: "/work", image: "/srv", want: "/work"},
		{name: "cleaned", ctr: "/work/../data/", want: "/data"},
		{name: "relative container dir", ctr: "work", wantErr: true},
		{name: "relative image dir", image: "srv", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := processCwd(&Container{WorkingDir: tt.ctr}, &Image{WorkingDir: tt.image})
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("err = %v, want ErrInvalidArgument", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("cwd = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
