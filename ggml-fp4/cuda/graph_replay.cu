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
    FP4_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
        work();
    } catch (const std::exception&) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();  // clear the capture error
        refused_ = key;
        drop();
        return work();  // nothing ran while capturing; a real error shows up here again
    }
    FP4_CHECK(cudaStreamEndCapture(stream, &graph));
    const cudaError_t made = cudaGraphInstantiate(&exec_, graph, 0);
    cudaGraphDestroy(graph);
    if (made != cudaSuccess) {
        exec_ = nullptr;
        cudaGetLastError();
        refused_ = key;
        drop();
        return work();
    }
    FP4_CHECK(cudaGraphLaunch(exec_, stream));
}

}  // namespace fp4::cuda
