// The real node's test image (no dependencies).
module modeldeploy.io/tools/images/hello

go 1.26.0
