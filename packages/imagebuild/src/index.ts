// @psyops/imagebuild: not written yet (see README.md). Its public API will be exported from here.
export {};
