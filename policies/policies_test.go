package policies

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestResolveTightensOnly(t *testing.T) {
	short := 2 * time.Second
	p, err := Resolve("default", Overrides{RequestTimeout: &short}, DefaultCeiling)
	if err != nil || p.RequestTimeout != short || p.MemoryMB != Presets["default"].MemoryMB {
		t.Fatalf("policy %+v, err %v", p, err)
	}
	ceiling := DefaultCeiling
	ceiling.MaxInstances = 2
	var fe *FieldError
	if _, err := Resolve("default", Overrides{}, ceiling); !errors.As(err, &fe) || fe.Key != "max_instances" {
		t.Fatalf("a preset above the ceiling must fail on max_instances, got %v", err)
	}
	if _, err := Resolve("nope", Overrides{}, DefaultCeiling); !errors.As(err, &fe) || fe.Key != "preset" {
		t.Fatalf("unknown preset: %v", err)
	}
	for name, p := range Presets {
		if err := p.within(DefaultCeiling); err != nil {
			t.Errorf("preset %s is outside the default ceiling: %v", name, err)
		}
	}
}

func TestCeiling(t *testing.T) {
	two, minute := 2, time.Minute
	c, err := Ceiling(Overrides{MaxInstances: &two, RequestTimeout: &minute})
	if err != nil || c.MaxInstances != 2 || c.RequestTimeout != minute || c.MemoryMB != DefaultCeiling.MemoryMB {
		t.Fatalf("ceiling %+v, err %v", c, err)
	}
	if _, err := Resolve("strict", Overrides{}, c); err != nil {
		t.Fatalf("strict (1 instance) fits a ceiling of 2: %v", err)
	}
	zero, small, huge := 0, 16, 1<<44
	var fe *FieldError
	for key, o := range map[string]Overrides{
		"max_instances": {MaxInstances: &zero},
		"memory_mb":     {MemoryMB: &small},
		"memory_mb ":    {MemoryMB: &huge},
	} {
		if _, err := Ceiling(o); !errors.As(err, &fe) || fe.Key != strings.TrimSpace(key) {
			t.Errorf("ceiling with a bad %s: %v", key, err)
		}
	}
}

// TestZeroMeansWhatItSays: a zero body limit or queue is a real, stricter
// value and passes a low ceiling as such; a zero data quota is refused,
// not taken as "no limit".
func TestZeroMeansWhatItSays(t *testing.T) {
	ceiling := DefaultCeiling
	ceiling.MaxBodyBytes, ceiling.QueueLength = 1024, 4
	var zero64 int64
	zero := 0
	p, err := Resolve("default", Overrides{MaxBodyBytes: &zero64, QueueLength: &zero}, ceiling)
	if err != nil || p.MaxBodyBytes != 0 || p.QueueLength != 0 {
		t.Fatalf("zero body limit and queue under a low ceiling: %+v, %v", p, err)
	}
	var fe *FieldError
	if _, err := Resolve("data", Overrides{DataMaxMB: &zero}, DefaultCeiling); !errors.As(err, &fe) || fe.Key != "data_max_mb" {
		t.Fatalf("data_max_mb = 0: %v, want an error on data_max_mb", err)
	}
	big := DefaultCeiling.DataMaxMB + 1
	if _, err := Resolve("data", Overrides{DataMaxMB: &big}, DefaultCeiling); !errors.As(err, &fe) || fe.Key != "data_max_mb" {
		t.Fatalf("data_max_mb over the ceiling: %v, want an error on data_max_mb", err)
	}
}
