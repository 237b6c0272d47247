package policies

import (
	"errors"
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
