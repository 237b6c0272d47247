from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Note


def index(request):
    return HttpResponse("Hello from Django!\n", content_type="text/plain")


@csrf_exempt
def notes(request):
    if request.method == "POST":
        note = Note.objects.create(text=request.body.decode()[:200])
        return JsonResponse({"id": note.id, "text": note.text}, status=201)
    return JsonResponse({"notes": [n.text for n in Note.objects.order_by("id")]})
