// The client events the page sends on `oai-events` (realtime-api.md §4). Pure, node-tested.

// Hands-free: OpenAI decides when the user has finished, and answers by itself. Push-to-talk
// ("manual"): detection off; the page commits.
function turnDetection(mode) {
  if (mode === "manual") return null;
  const answer = { create_response: true, interrupt_response: true };
  if (mode === "semantic_vad") return { type: "semantic_vad", eagerness: "auto", ...answer };
  return { type: "server_vad", silence_duration_ms: 500, ...answer };
}

// A mode change during a session: only the changed field.
export const sessionUpdateMode = (mode) => ({
  type: "session.update", session: { type: "realtime", audio: { input: { turn_detection: turnDetection(mode) } } },
});

export const typedMessage = (text) => [
  { type: "conversation.item.create", item: { type: "message", role: "user", content: [{ type: "input_text", text }] } },
  { type: "response.create" },
];

// Push-to-talk: forget stray audio when the button goes down, answer when it comes up.
export const pushToTalkPress = () => [{ type: "input_audio_buffer.clear" }];
export const pushToTalkRelease = () => [{ type: "input_audio_buffer.commit" }, { type: "response.create" }];

// Stop the assistant: end the response, and drop the audio already queued for playback.
export const interruptReply = () => [{ type: "response.cancel" }, { type: "output_audio_buffer.clear" }];
