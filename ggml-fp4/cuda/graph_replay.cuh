// graph_replay.cuh — CUDA-graph capture and replay of the work a backend enqueues for one ggml-fp4 graph.
// A decode step launches the same ~600 kernels with the same arguments at every token; only the bytes
// of the inputs differ. The backend describes such a graph by a key (shapes, parameters, buffer
// addresses); the second time a key comes in a row its work is captured, and replayed from then on,
// which removes the per-kernel launch cost. Anything else runs directly.
#pragma once

#include <functional>
#include <string>

#include "common.cuh"

namespace fp4::cuda {

class GraphReplay {
public:
    GraphReplay() = default;
    GraphReplay(const GraphReplay&) = delete;
    GraphReplay& operator=(const GraphReplay&) = delete;
    ~GraphReplay() { drop(); }

    // Enqueues `work` on `stream`, or replays its capture. An empty key means "never capture". When
    // capturing fails (work that cannot be captured), the work runs directly and the key is not tried again.
    void run(cudaStream_t stream, const std::string& key, const std::function<void()>& work);

private:
    void drop();
    std::string key_, refused_;
    cudaGraphExec_t exec_ = nullptr;
};

}  // namespace fp4::cuda
