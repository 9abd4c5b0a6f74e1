package server

import "strings"

// origin formats what a publish request says of where it comes from,
// beside the peer address, for the stream's entry (store.Entry.Source,
// listed by bes streams; issue 14): " (project_id P; keywords K1, K2)",
// either part left out when empty, "" when both are. projectID is
// PublishBuildToolEventStreamRequest.project_id or
// PublishLifecycleEventRequest.project_id (Bazel's --project_id);
// keywords is PublishBuildToolEventStreamRequest.notification_keywords
// (Bazel's --bes_keywords, with its own "command_name=…" and
// "protocol_name=BEP"), as the request that opens the stream carries them.
// Over maxOrigin bytes, the rest is cut and marked "…".
func origin(projectID string, keywords []string) string {
	var parts []string
	if projectID != "" {
		parts = append(parts, "project_id "+projectID)
	}
	if len(keywords) > 0 {
		parts = append(parts, "keywords "+strings.Join(keywords, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	o := strings.Join(parts, "; ")
	if len(o) > maxOrigin {
		// A client's megabytes of keywords are not copied into every
		// listing of the stream.
		o = strings.ToValidUTF8(o[:maxOrigin], "") + "…"
	}
	return " (" + o + ")"
}

// maxOrigin is the most bytes of project id and keywords kept.
const maxOrigin = 1 << 10
