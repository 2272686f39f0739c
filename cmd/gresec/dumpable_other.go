//go:build !linux

package main

func setNotDumpable() {}
