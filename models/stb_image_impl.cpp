// stb_image_impl.cpp — the one translation unit that compiles stb_image, limited to the formats the engine
// reads with it (PNG, BMP, GIF; JPEG and WebP have their libraries); headerless formats such as TGA are left
// out so that arbitrary bytes are never mistaken for an image.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image.h>
#pragma GCC diagnostic pop
