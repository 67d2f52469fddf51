// graph_replay.cu — capture on the second sighting of a key, replay after that; see graph_replay.cuh.
#include "graph_replay.cuh"

namespace fp4::cuda {

void GraphReplay::drop() {
    if (exec_) cudaGraphExecDestroy(exec_);
    exec_ = nullptr;
    key_.clear();
}

void GraphReplay::run(cudaStream_t stream, const std::string& key, const std::function<void()>& work) {
    if (key.empty() || key == refused_) return work();
    if (key == key_ && exec_) {
        FP4_CHECK(cudaGraphLaunch(exec_, stream));
        return;
    }
    if (key != key_) {  // first sighting: run directly, which also grows any scratch buffer the work needs
        drop();
        key_ = key;
        return work();
    }
    // Work that cannot be captured (it throws, or something it called invalidated the capture, which
    // only ending it reports) or a graph that cannot be instantiated: the key is refused and the work
    // runs directly (nothing ran while capturing; a real error shows up there again).
    auto refuse = [&](cudaGraph_t graph) {
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();  // clear the capture error
        refused_ = key;
        drop();
        work();
    };
    FP4_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
        work();
    } catch (const std::exception&) {
        cudaStreamEndCapture(stream, &graph);
        return refuse(graph);
    }
    if (cudaStreamEndCapture(stream, &graph) != cudaSuccess) return refuse(graph);
    const cudaError_t made = cudaGraphInstantiate(&exec_, graph, 0);
    cudaGraphDestroy(graph);
    if (made != cudaSuccess) {
        exec_ = nullptr;
        return refuse(nullptr);
    }
    FP4_CHECK(cudaGraphLaunch(exec_, stream));
}

}  // namespace fp4::cuda
