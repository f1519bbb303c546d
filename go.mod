module github.com/sluicerl/sluice

go 1.26.8

require pgregory.net/rapid v1.3.0

require (
	github.com/fsnotify/fsnotify v1.10.1 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.13.0 // indirect
)
