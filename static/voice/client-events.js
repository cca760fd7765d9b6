// The client events the page sends on `oai-events` (realtime-api.md §4). Pure, node-tested.

// Turn detection per mode. Hands-free modes let OpenAI decide when the user has finished and
// answer by itself; push-to-talk ("manual") switches detection off and the page commits.
export const MODES = ["server_vad", "semantic_vad", "manual"];

export function turnDetection(mode) {
  if (mode === "manual") return null;
  if (mode === "semantic_vad") {
    return { type: "semantic_vad", eagerness: "auto", create_response: true, interrupt_response: true };
  }
  return { type: "server_vad", silence_duration_ms: 500, create_response: true, interrupt_response: true };
}

// Switch modes during a session: only the changed field is sent.
export function sessionUpdateMode(mode) {
  return { type: "session.update", session: { type: "realtime", audio: { input: { turn_detection: turnDetection(mode) } } } };
}

export function typedMessage(text) {
  const item = { type: "message", role: "user", content: [{ type: "input_text", text }] };
  return [{ type: "conversation.item.create", item }, { type: "response.create" }];
}

// Push-to-talk: forget stray audio when the button goes down, answer when it comes up.
export const pushToTalkPress = () => [{ type: "input_audio_buffer.clear" }];
export const pushToTalkRelease = () => [{ type: "input_audio_buffer.commit" }, { type: "response.create" }];

// Stop the assistant: end the response, and drop the audio already queued for playback.
export const interruptReply = () => [{ type: "response.cancel" }, { type: "output_audio_buffer.clear" }];
