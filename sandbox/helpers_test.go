package sandbox_test

import (
	"strconv"
	"time"
)

func nowUnix() string { return strconv.FormatInt(time.Now().Unix(), 10) }
