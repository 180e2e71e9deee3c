listener "public" {
  adress = "127.0.0.1:8080"
}
route "x" {
  respond {}
  upstreams = "app"
}
frontend "web" {}
