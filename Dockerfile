# syntax=docker/dockerfile:1
# Build a static locksmith binary, then ship it alone on a distroless base as
# a non-root user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.Version=${VERSION}" -o /out/locksmith ./cmd/locksmith

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/locksmith /usr/local/bin/locksmith
USER nonroot:nonroot
ENV LOCKSMITH_ADDR=:8080 LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/locksmith"]
CMD ["serve"]
