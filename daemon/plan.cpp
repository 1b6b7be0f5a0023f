#include "daemon/plan.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/text_table.h"
#include "engine/backend/placement.h"
#include "engine/backend/quantize.h"
#include "engine/kv/kv_block_pool.h"
#include "engine/tasks/model_footprint.h"

namespace sparkd::daemon {

namespace {

governor::ModelAccountOptions account_of(const ModelConfig& config, const PlannedModel& model) {
  governor::ModelAccountOptions account;
  account.name = config.name;
  account.priority = config.priority;
  account.pinned = config.residency == Residency::kPinned;
  account.kv_min_bytes = model.kv_min_bytes;
  account.kv_max_bytes = model.kv_max_bytes;
  return account;
}

governor::LoadEstimate estimate_of(const PlannedModel& model) {
  governor::LoadEstimate estimate;
  estimate.weights_bytes = model.weights_bytes;
  estimate.workspace_bytes = model.workspace_bytes;
  return estimate;
}

}  // namespace

tasks::FootprintOptions footprint_options(const ModelConfig& model) {
  tasks::FootprintOptions options;
  options.max_batch_tokens = model.max_batch_tokens;
  options.max_seqs = model.max_seqs;
  options.max_batch_inputs = model.max_batch_inputs;
  options.block_tokens = model.block_tokens;
  options.kv_max_bytes = model.kv_max_bytes;
  if (!model.quantize.empty()) options.quantize = quant::quantize_target(model.quantize);
  // The KV dtype of the backend the model will run on (the device was checked at parse).
  if (auto placement = parse_placement(model.device)) options.kv_dtype = kv_dtype_for(*placement);
  return options;
}

Plan make_plan(const DaemonConfig& config, governor::MachineMemorySource& machine,
               uint64_t baseline_bytes) {
  Plan plan;
  plan.config_path = config.source_path;
  governor::GovernorOptions options;
  options.budget_bytes = config.governor.budget_bytes;
  options.os_reserve_bytes = config.governor.os_reserve_bytes;
  options.baseline_bytes = baseline_bytes;
  governor::MemoryGovernor governor(options, machine);
  const governor::LedgerSnapshot start = governor.snapshot();
  plan.budget_bytes = start.budget_bytes;
  plan.configured_budget_bytes = config.governor.budget_bytes;
  plan.mem_available_bytes = start.mem_available_bytes;
  plan.os_reserve_bytes = config.governor.os_reserve_bytes;
  plan.baseline_bytes = baseline_bytes;
  plan.pinned_fit = true;

  std::vector<const ModelConfig*> configs;
  for (const ModelConfig& model_config : config.models) {
    PlannedModel model;
    model.name = model_config.name;
    model.residency = std::string(residency_name(model_config.residency));
    model.priority = model_config.priority;
    auto footprint = tasks::estimate_footprint(model_config.path, footprint_options(model_config));
    if (!footprint) {
      model.verdict = "cannot load: " + footprint.status().message();
    } else {
      model.task = model::task_name(footprint->spec.task);
      model.weights_bytes = footprint->weights_bytes;
      model.workspace_bytes = footprint->workspace_bytes;
      if (footprint->spec.task == model::ModelTask::kGenerate) {
        const KvBlockPoolGeometry& geometry = footprint->kv_geometry;
        model.kv_bytes_per_token = footprint->kv_bytes_per_token;
        model.kv_max_bytes = footprint->kv_cap_bytes;
        model.kv_min_bytes = std::min(model_config.kv_min_bytes, model.kv_max_bytes);
        model.kv_max_tokens = static_cast<uint64_t>(geometry.max_blocks) *
                              static_cast<uint64_t>(geometry.block_tokens);
        model.kv_min_tokens =
            static_cast<uint64_t>(KvBlockPool::max_blocks_within(geometry, model.kv_min_bytes)) *
            static_cast<uint64_t>(geometry.block_tokens);
        if (geometry.max_blocks < 1) {
          model.verdict =
              "cannot load: kv_max cannot hold one KV block; this model's KV pool "
              "commits at least " +
              human_bytes(footprint->kv_smallest_pool_bytes);
        }
      }
      model.least_bytes = model.weights_bytes + model.workspace_bytes + model.kv_min_bytes;
    }
    plan.models.push_back(std::move(model));
    configs.push_back(&model_config);
  }

  // The pinned models, in the order a start loads them, through the governor's admission.
  for (size_t i = 0; i < plan.models.size(); ++i) {
    PlannedModel& model = plan.models[i];
    if (configs[i]->residency != Residency::kPinned) continue;
    if (!model.verdict.empty()) {
      plan.pinned_fit = false;
      continue;
    }
    const auto decision =
        governor.try_begin_load(account_of(*configs[i], model), estimate_of(model));
    if (decision.admission == governor::MemoryGovernor::Admission::kAdmitted) {
      governor.finish_load(decision.account, model.weights_bytes, model.workspace_bytes, 0);
      model.fits = true;
      model.verdict = "fits";
    } else {
      plan.pinned_fit = false;
      model.verdict = decision.admission == governor::MemoryGovernor::Admission::kNeverFits
                          ? "never fits"
                          : "does not fit beside the pinned models before it";
      model.detail = decision.status.message();
    }
  }
  plan.pinned_bytes = governor.snapshot().reserved_bytes;

  // Each on_demand model on top of the pinned ones (alone: the others are evictable).
  for (size_t i = 0; i < plan.models.size(); ++i) {
    PlannedModel& model = plan.models[i];
    if (configs[i]->residency != Residency::kOnDemand || !model.verdict.empty()) continue;
    const auto decision =
        governor.try_begin_load(account_of(*configs[i], model), estimate_of(model));
    if (decision.admission == governor::MemoryGovernor::Admission::kAdmitted) {
      governor.close_account(decision.account);
      model.fits = true;
      model.verdict = "fits";
    } else {
      model.verdict = decision.admission == governor::MemoryGovernor::Admission::kNeverFits
                          ? "never fits"
                          : "does not fit beside the pinned models on this machine now";
      model.detail = decision.status.message();
    }
  }

  // What to change, biggest contributors first.
  if (!plan.pinned_fit) {
    std::vector<const PlannedModel*> pinned;
    for (size_t i = 0; i < plan.models.size(); ++i) {
      if (configs[i]->residency == Residency::kPinned) pinned.push_back(&plan.models[i]);
    }
    std::sort(pinned.begin(), pinned.end(), [](const PlannedModel* a, const PlannedModel* b) {
      return a->least_bytes > b->least_bytes;
    });
    for (const PlannedModel* model : pinned) {
      if (model->verdict.rfind("cannot load", 0) == 0) {
        plan.advice.push_back("fix or remove " + model->name + " (" + model->verdict + ")");
        continue;
      }
      if (model->kv_min_bytes > 0) {
        plan.advice.push_back("lower kv_min of " + model->name + " (" +
                              human_bytes(model->kv_min_bytes) + " reserved)");
      }
      if (model->workspace_bytes > model->weights_bytes / 4) {
        plan.advice.push_back("lower max_batch_tokens of " + model->name + " (its workspace is " +
                              human_bytes(model->workspace_bytes) + ")");
      }
      plan.advice.push_back("make " + model->name + " residency = \"on_demand\" (it holds " +
                            human_bytes(model->least_bytes) + ")");
    }
    plan.advice.push_back(
        "raise governor.budget, lower governor.os_reserve, or free memory on this machine");
  }
  return plan;
}

std::string plan_text(const Plan& plan) {
  std::ostringstream out;
  out << "sparkd plan: " << plan.config_path << "\n";
  out << "budget    " << human_bytes(plan.budget_bytes) << " on this machine now ("
      << (plan.configured_budget_bytes > 0
              ? "governor.budget " + human_bytes(plan.configured_budget_bytes) + ", at most "
              : std::string("auto: "))
      << "MemAvailable " << human_bytes(plan.mem_available_bytes) << " + baseline - os_reserve "
      << human_bytes(plan.os_reserve_bytes) << ")\n";
  out << "baseline  " << human_bytes(plan.baseline_bytes) << " (the daemon before any model)\n\n";
  std::vector<std::vector<std::string>> rows = {{"MODEL", "TASK", "RESIDENCY", "PRIORITY",
                                                 "WEIGHTS", "WORKSPACE", "KV/TOKEN", "KV_MIN",
                                                 "KV_MAX", "RESERVES", "VERDICT"}};
  for (const PlannedModel& m : plan.models) {
    const bool kv = m.kv_bytes_per_token > 0;
    rows.push_back(
        {m.name, m.task.empty() ? "?" : m.task, m.residency, std::to_string(m.priority),
         human_bytes(m.weights_bytes), human_bytes(m.workspace_bytes),
         kv ? human_bytes(m.kv_bytes_per_token) : "-",
         kv ? human_bytes(m.kv_min_bytes) + " (" + std::to_string(m.kv_min_tokens) + " tokens)"
            : "-",
         kv ? human_bytes(m.kv_max_bytes) + " (" + std::to_string(m.kv_max_tokens) + " tokens)"
            : "-",
         human_bytes(m.least_bytes), m.verdict});
  }
  out << text_table(rows) << "\n";
  for (const PlannedModel& m : plan.models) {
    if (!m.detail.empty()) out << m.name << ": " << m.detail << "\n";
  }
  if (plan.pinned_fit) {
    out << "fits: the pinned models and the baseline reserve " << human_bytes(plan.pinned_bytes)
        << " of the " << human_bytes(plan.budget_bytes) << " budget; "
        << human_bytes(plan.budget_bytes > plan.pinned_bytes ? plan.budget_bytes - plan.pinned_bytes
                                                             : 0)
        << " stay for KV growth, on_demand models and prefix cache\n";
  } else {
    out << "does not fit: the pinned models and the baseline need more than the "
        << human_bytes(plan.budget_bytes) << " budget. What to change:\n";
    for (const std::string& advice : plan.advice) out << "  - " << advice << "\n";
  }
  return out.str();
}

std::string plan_json(const Plan& plan) {
  nlohmann::json json;
  json["config"] = plan.config_path;
  json["budget_bytes"] = plan.budget_bytes;
  json["configured_budget_bytes"] = plan.configured_budget_bytes;
  json["mem_available_bytes"] = plan.mem_available_bytes;
  json["os_reserve_bytes"] = plan.os_reserve_bytes;
  json["baseline_bytes"] = plan.baseline_bytes;
  json["pinned_bytes"] = plan.pinned_bytes;
  json["fits"] = plan.pinned_fit;
  json["advice"] = plan.advice;
  json["models"] = nlohmann::json::array();
  for (const PlannedModel& m : plan.models) {
    json["models"].push_back({{"name", m.name},
                              {"task", m.task},
                              {"residency", m.residency},
                              {"priority", m.priority},
                              {"weights_bytes", m.weights_bytes},
                              {"workspace_bytes", m.workspace_bytes},
                              {"kv_bytes_per_token", m.kv_bytes_per_token},
                              {"kv_min_bytes", m.kv_min_bytes},
                              {"kv_max_bytes", m.kv_max_bytes},
                              {"kv_min_tokens", m.kv_min_tokens},
                              {"kv_max_tokens", m.kv_max_tokens},
                              {"reserves_bytes", m.least_bytes},
                              {"fits", m.fits},
                              {"verdict", m.verdict},
                              {"detail", m.detail}});
  }
  return json.dump();
}

}  // namespace sparkd::daemon
