{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "jwks-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every object: fullnameOverride, else the release name if
it already contains the chart name, else <release>-<chart>. Truncated to 55
characters so that "<fullname>-metrics" is still a valid Service name (a
63-character DNS label).
*/}}
{{- define "jwks-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
helm.sh/chart label value.
*/}}
{{- define "jwks-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels selecting the operator's pods. Never change them: a Deployment's
selector is immutable.
*/}}
{{- define "jwks-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jwks-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels on every object.
*/}}
{{- define "jwks-operator.labels" -}}
helm.sh/chart: {{ include "jwks-operator.chart" . }}
{{ include "jwks-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jwks-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "jwks-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jwks-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The leader-election Lease name.
*/}}
{{- define "jwks-operator.leaseName" -}}
{{- default (printf "%s-leader" (include "jwks-operator.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The container image: repository:tag, or repository@digest (repository:tag@digest
when both are set).
*/}}
{{- define "jwks-operator.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- /* No image is published under the default name: refuse to render a
Deployment that would only reach ImagePullBackOff. A locally loaded image
(pullPolicy Never), another repository or a digest is taken as a choice. */}}
{{- if and (eq .Values.image.repository "ghcr.io/jwks-operator/jwks-operator") (not .Values.image.digest) (ne .Values.image.pullPolicy "Never") }}
{{- fail "no jwks-operator image is published yet: ghcr.io/jwks-operator/jwks-operator cannot be pulled. Build the image with scripts/build-image.sh and either load it into every node (ctr, kind or k3d; README, section Image) and add --set image.pullPolicy=Never, or push it to your registry and set image.repository (or image.digest)" }}
{{- end }}
{{- if .Values.image.digest }}
{{- if .Values.image.tag }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- end }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
In-cluster base URL of the JWKS Service.
*/}}
{{- define "jwks-operator.serviceUrl" -}}
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" .Values.tls.enabled) (include "jwks-operator.fullname" .) .Release.Namespace (int .Values.service.port) }}
{{- end }}

{{/*
The kubernetes.io/tls Secret the pod mounts when tls.enabled: tls.secretName,
else (with cert-manager) <fullname>-tls.
*/}}
{{- define "jwks-operator.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "jwks-operator.fullname" .)) }}
{{- end }}

{{/*
Value combinations values.schema.json cannot explain well. Included by the
Deployment, so `helm install` fails before anything is created.
*/}}
{{- define "jwks-operator.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas is %d but leaderElection.enabled is false: every replica would write keys. Enable leader election or set replicas: 1" (int .Values.replicas)) }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) (not .Values.tls.certManager.enabled) }}
{{- fail "tls.enabled needs a certificate: set tls.secretName (an existing kubernetes.io/tls Secret) or tls.certManager.enabled" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.enabled) }}
{{- fail "tls.certManager.enabled requires tls.enabled: nothing would use the certificate" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name is empty: name the cert-manager Issuer or ClusterIssuer that signs the certificate" }}
{{- end }}
{{- if and .Values.tokenListener.enabled (not .Values.tokenListener.auth.bearerTokenSecret.name) (not .Values.tokenListener.auth.clientCASecret.name) }}
{{- fail "tokenListener.enabled needs a client credential: set tokenListener.auth.bearerTokenSecret.name (a Secret holding a bearer token) and/or tokenListener.auth.clientCASecret.name (client certificates, with tls.enabled)" }}
{{- end }}
{{- if and .Values.tokenListener.auth.clientCASecret.name (not .Values.tls.enabled) }}
{{- fail "tokenListener.auth.clientCASecret needs tls.enabled: client certificates are checked in the TLS handshake" }}
{{- end }}
{{- if and .Values.tokenListener.service.enabled (not .Values.tokenListener.enabled) }}
{{- fail "tokenListener.service.enabled requires tokenListener.enabled: there is no token listener to expose" }}
{{- end }}
{{- if and (gt (int .Values.shutdownDelaySeconds) 0) (ge (int .Values.shutdownDelaySeconds) (int .Values.terminationGracePeriodSeconds)) }}
{{- fail (printf "shutdownDelaySeconds (%d) must be less than terminationGracePeriodSeconds (%d): the pod needs time to stop after the delay" (int .Values.shutdownDelaySeconds) (int .Values.terminationGracePeriodSeconds)) }}
{{- end }}
{{- end }}

{{/*
The RBAC rules the operator uses on policies, Secrets, ConfigMaps and events,
in every watched namespace. Nothing else: no delete (Secrets and ConfigMaps
are garbage-collected through their ownerReferences to the policy), no
wildcard.
*/}}
{{- define "jwks-operator.rules" -}}
- apiGroups: ["jwks.dev"]
  resources: ["keyrotationpolicies"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["jwks.dev"]
  resources: ["keyrotationpolicies/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
The Secret holding the token listener's bearer token, when the token listener
is on and uses one; empty otherwise.
*/}}
{{- define "jwks-operator.tokenAuthSecret" -}}
{{- if .Values.tokenListener.enabled }}{{ .Values.tokenListener.auth.bearerTokenSecret.name }}{{ end }}
{{- end }}

{{/*
The Secret holding the CA certificates of the token listener's clients, when
the token listener is on and uses them; empty otherwise.
*/}}
{{- define "jwks-operator.tokenClientCASecret" -}}
{{- if .Values.tokenListener.enabled }}{{ .Values.tokenListener.auth.clientCASecret.name }}{{ end }}
{{- end }}

{{/*
Non-empty when the pod has any volume (a Secret it mounts, or extraVolumes).
*/}}
{{- define "jwks-operator.volumes" -}}
{{- if or .Values.tls.enabled (include "jwks-operator.tokenAuthSecret" .) (include "jwks-operator.tokenClientCASecret" .) .Values.extraVolumes .Values.extraVolumeMounts }}true{{ end }}
{{- end }}
