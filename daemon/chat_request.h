// sparkd.v1 chat requests in the engine's terms: the conversation a chat template renders, and
// the model's output split into answer, reasoning and tool calls for GenerateChunk.
#pragma once

#include <string>
#include <string_view>

#include "api/sparkd.pb.h"
#include "common/status.h"
#include "engine/tasks/chat_output.h"
#include "engine/tasks/chat_template.h"

namespace sparkd::daemon {

// The conversation as transformers' apply_chat_template takes it (OpenAI's message shape):
// reasoning as reasoning_content, tool calls as {"id", "type": "function", "function": {"name",
// "arguments": {...}}} with their arguments parsed (templates print them with tojson, as vLLM
// hands them over), tool results with tool_call_id and name; tools, documents and the
// template variables parsed from their JSON. The request was validated (the JSON parses).
Expected<tasks::ChatInput> chat_input_from(const v1::Chat& chat);

// A fresh id for a tool call the model made ("call_" and 24 random hex digits).
std::string new_tool_call_id();

// Fills a chunk's text, reasoning and tool_calls from a split of the model's output; returns
// whether it held tool calls.
bool set_chat_output(const tasks::ChatOutput& output, v1::GenerateChunk& chunk);

}  // namespace sparkd::daemon
